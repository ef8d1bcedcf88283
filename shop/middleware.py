"""Limits every request meets before any view runs (API.md, "Authentication, limits and
abuse"): a body over ``MAX_REQUEST_BODY_BYTES`` is refused unread, a query string or a
header that is not valid text (a NUL byte, bytes that are not UTF-8, such as an encoded
lone surrogate) or has too many fields is refused, and a ``HEAD`` answer carries no
body. Then what every answer carries: ``Cache-Control: private, no-store`` when it
depends on the caller, and a Content-Security-Policy on the admin.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control

from shop.api import error_body

Handler = Callable[[HttpRequest], HttpResponse]


class RequestLimitsMiddleware:
    """413 ``request_too_large`` for a body over the limit, before a byte of it is
    read; 400 ``invalid`` for a query parameter no database or parser should see.

    Only the declared ``Content-Length`` needs checking: Django reads the body through
    a stream limited to that length (``LimitedStream``), so a client sending more, or
    a chunked body without a length, never gets more than the limit into memory.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = (self.body_refusal(request) or self.query_refusal(request)
                   or self.header_refusal(request))
        if refusal is not None:
            # The unread body is the server's to discard: a WSGI application may not
            # send ``Connection: close`` (PEP 3333: gunicorn drops the header, Django's
            # development server answers 500 to it), and behind nginx
            # (deploy/nginx.conf) no body over the limit reaches the app.
            return refusal
        return self.get_response(request)

    @staticmethod
    def body_refusal(request: HttpRequest) -> JsonResponse | None:
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                error_body("invalid", "The Content-Length header is not a number.", {}),
                status=400,
            )
        if length <= limit:
            return None
        return JsonResponse(
            error_body(
                "request_too_large",
                f"The request body is {length} bytes; the limit is {limit} bytes.",
            ),
            status=413,
        )

    @staticmethod
    def query_refusal(request: HttpRequest) -> JsonResponse | None:
        try:
            params = request.GET
        except SuspiciousOperation as exc:  # e.g. more than DATA_UPLOAD_MAX_NUMBER_FIELDS
            return JsonResponse(error_body("invalid", str(exc), {}), status=400)
        try:  # Django decodes leniently (U+FFFD for bad bytes): check the bytes strictly
            parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True,
                      encoding="utf-8", errors="strict")
        except UnicodeError:
            message = "The query string is not valid UTF-8 text."
            return JsonResponse(error_body("invalid", message, {"query": [message]}),
                                status=400)
        errors = {
            name.replace("\x00", "\\x00"): ["A query parameter may not contain a NUL byte."]
            for name, values in params.lists()
            if "\x00" in name or any("\x00" in value for value in values)
        }
        if not errors:
            return None
        return JsonResponse(
            error_body("invalid", "A query parameter contains a NUL byte.", errors), status=400
        )

    @staticmethod
    def header_refusal(request: HttpRequest) -> JsonResponse | None:
        """400 ``invalid`` for a header whose bytes are not UTF-8 text (WSGI hands
        them over as Latin-1) or that holds a NUL byte."""
        for key, value in request.META.items():
            if not key.startswith("HTTP_") or not isinstance(value, str):
                continue
            try:
                ok = "\x00" not in value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                ok = False
            if not ok:
                name = key[5:].replace("_", "-").title()
                message = "The header is not valid UTF-8 text."
                return JsonResponse(
                    error_body("invalid", f"{name}: {message}", {name: [message]}), status=400
                )
        return None


class PrivateResponsesMiddleware:
    """``Cache-Control: private, no-store`` on every answer that depends on the caller:
    to any request with credentials (a token, a session or other cookie) or from a
    signed-in user, and to anything but ``GET``/``HEAD`` (a new token, a command's
    outcome). Only anonymous reads may be kept by a cache."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            request.method not in ("GET", "HEAD")
            or "HTTP_AUTHORIZATION" in request.META
            or request.COOKIES
            or (user is not None and user.is_authenticated)
        ):
            patch_cache_control(response, private=True, no_store=True)
        return response


class AdminContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on the admin's pages: scripts only from the shop
    itself, never inline (Django's admin has none; the shop's pages load theirs from
    static files), no plugins, no framing, forms posting only to the shop. Inline
    ``style`` stays allowed: Django's admin templates and the dashboard's charts use
    style attributes."""

    POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", self.POLICY)
        return response


class HeadWithoutBodyMiddleware:
    """A ``HEAD`` answer has the headers of the ``GET`` and no body: a body there would
    be read by a keep-alive client as the start of its next response."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            response.streaming_content = []
        else:
            if not response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response


class ApiPathsMiddleware:
    """Under ``/api/``, one convention for paths and one body for errors (API.md):

    - every path ends in ``/``; the same path without it gets the same answer (the
      request is routed as if it had the slash: no redirect, which would lose a POST's
      body);
    - a 404 or 405 that no view of ours answered (an unknown path, with DEBUG on or
      off) is ``{code, detail}`` JSON like every other error, not an HTML page.
    """

    ERRORS = {
        404: ("not_found", "Not found."),
        405: ("method_not_allowed", "Method not allowed."),
    }

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith("/api/"):
            return self.get_response(request)
        if not request.path_info.endswith("/"):
            request.path_info += "/"
            request.path += "/"
        response = self.get_response(request)
        error = self.ERRORS.get(response.status_code)
        if error and not response.get("Content-Type", "").startswith("application/json"):
            json_response = JsonResponse(error_body(*error), status=response.status_code)
            if response.has_header("Allow"):
                json_response["Allow"] = response["Allow"]
            return json_response
        return response
