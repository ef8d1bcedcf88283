"""Limits every request meets before any view runs (API.md, "Authentication, limits and
abuse"): a body over ``MAX_REQUEST_BODY_BYTES`` is refused unread, a query string with
a NUL byte or too many fields is refused, and a ``HEAD`` answer carries no body.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

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
        refusal = self.body_refusal(request) or self.query_refusal(request)
        if refusal is not None:
            refusal["Connection"] = "close"  # the unread body must not be parsed as a request
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
