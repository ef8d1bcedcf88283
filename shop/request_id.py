"""Every request has an id, and every response says it (``X-Request-ID``).

The request's own ``X-Request-ID`` is kept if it is 1-128 printable ASCII characters
(a proxy's or a client's, so one id follows a request across systems); otherwise the
shop gives it a new UUID. The id is stored with every event the request's command
appends (``shop.metadata``) and on every log line written while it runs (``shop.logs``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from shop.logs import bound, user_of
from shop.metadata import new_request_id

HEADER = "X-Request-ID"
MAX_LENGTH = 128


def valid_request_id(value: str) -> bool:
    return 1 <= len(value) <= MAX_LENGTH and all(" " <= ch <= "~" for ch in value)


def request_id_of(request: HttpRequest) -> str:
    return getattr(request, "request_id", None) or new_request_id()


class RequestIdMiddleware:
    """First in the chain, so that every response carries the id, errors included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = given if valid_request_id(given) else new_request_id()
        with bound(request_id=request.request_id, user=user_of(request)):
            response = self.get_response(request)
        response[HEADER] = request.request_id
        return response
