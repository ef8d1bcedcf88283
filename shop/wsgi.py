"""The WSGI application, with chunked request bodies read or refused, never dropped.

Django reads a body through ``CONTENT_LENGTH``; a chunked request has none, so Django
alone would read it as empty (a valid order answered 400 "lines required"). A server
that de-chunks the body and marks its end (``wsgi.input_terminated``: gunicorn does)
gets it read here, at most ``MAX_REQUEST_BODY_BYTES`` (413 past that), and handed on
with its length. A server that does not (Django's development server) gets 411
``length_required``. Behind the proxy (deploy/nginx.conf) every body arrives with its
length: nginx buffers a chunked body and sends it on with ``Content-Length``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")


def refusal(start_response: Callable, status: str, code: str, detail: str) -> Iterable[bytes]:
    body = json.dumps({"code": code, "detail": detail}).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


class ChunkedBodies:
    def __init__(self, application: Callable) -> None:
        self.application = application

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                return refusal(
                    start_response,
                    "411 Length Required",
                    "length_required",
                    "Send the body with a Content-Length header.",
                )
            from django.conf import settings

            limit = settings.MAX_REQUEST_BODY_BYTES
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return refusal(
                    start_response,
                    "413 Request Entity Too Large",
                    "request_too_large",
                    f"The request body is over the limit of {limit} bytes.",
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


application = ChunkedBodies(get_wsgi_application())
