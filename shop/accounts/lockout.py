"""The admin's login lockout (django-axes): too many failed logins for one username
(from any address), or from one address (for any usernames), and that username or
address is refused until ``AXES_COOLOFF_TIME`` has passed (settings.py)."""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.http import JsonResponse
from rest_framework.throttling import BaseThrottle

from shop.accounts.services import username_key
from shop.api import error_body


def lockout_client_ip(request) -> str:
    """The client's address as the API's throttles read it: behind ``NUM_PROXIES``
    proxies (deploy/nginx.conf is one), from ``X-Forwarded-For``; else the peer's. Without
    it every admin login behind the proxy would come from the proxy's address, and one
    attacker's failures would lock everybody out."""
    return BaseThrottle().get_ident(request)


def lockout_username(request, credentials=None) -> str | None:
    """The username failures are counted under, as logging in reads it
    (``username_key``): `` Admin `` and ``admin`` count as one name."""
    source = credentials if credentials else getattr(request, "POST", {})
    username = source.get("username") if hasattr(source, "get") else None
    return username_key(username) if isinstance(username, str) else username


class AdminLockoutBackend(AxesStandaloneBackend):
    """Axes' check before any password is tried. A call without a request (a script,
    Django's test client) has no client to lock out, so it is let through."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_response(request, original_response=None, credentials=None) -> JsonResponse:
    """429 ``throttled`` with ``Retry-After``, the API's answer to too many attempts."""
    cool_off = get_cool_off(request)
    seconds = max(1, math.ceil(cool_off.total_seconds())) if cool_off else 3600
    response = JsonResponse(
        error_body("throttled", "Too many failed logins; try again later."), status=429
    )
    response["Retry-After"] = str(seconds)
    return response
