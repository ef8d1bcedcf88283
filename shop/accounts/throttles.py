"""Login and registration limits: per client IP and per (normalised) username, on top
of the per-user limit every endpoint has. Too many: 429 ``throttled``, ``Retry-After``.
"""

from __future__ import annotations

import hashlib

from shop.accounts.services import username_key
from shop.throttling import SharedRateThrottle, UserThrottle


class PerIpThrottle(SharedRateThrottle):
    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PerUsernameThrottle(SharedRateThrottle):
    """Counts attempts on one name however it is spelt (``John``, ``ＪＯＨＮ``)."""

    def get_cache_key(self, request, view) -> str | None:
        data = request.data
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username:
            return None  # the view answers 400; nothing to count
        ident = hashlib.sha256(username_key(username).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginIpThrottle(PerIpThrottle):
    scope = "login_ip"


class LoginUsernameThrottle(PerUsernameThrottle):
    scope = "login_username"


class RegisterIpThrottle(PerIpThrottle):
    scope = "register_ip"


class RegisterUsernameThrottle(PerUsernameThrottle):
    scope = "register_username"


class ForgetUserThrottle(SharedRateThrottle):
    """Re-entering the password to be forgotten is counted per account, as a login."""

    scope = "login_username"

    def get_cache_key(self, request, view) -> str | None:
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": "forget", "ident": request.user.pk}


LOGIN_THROTTLES = [UserThrottle, LoginIpThrottle, LoginUsernameThrottle]
REGISTER_THROTTLES = [UserThrottle, RegisterIpThrottle, RegisterUsernameThrottle]
FORGET_THROTTLES = [UserThrottle, LoginIpThrottle, ForgetUserThrottle]
