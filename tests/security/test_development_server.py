"""The refusals of hostile input answer as themselves under Django's development server
(``./dev serve``, the README's first command), not as a 500: that server, built on
``wsgiref``, refuses an application's hop-by-hop header (PEP 3333), and every refusal
used to carry ``Connection: close`` (found by hand on a fresh clone: ``?cursor=%00``
answered 500). gunicorn dropped that header without a word, so it ended no connection
anywhere: no refusal sends it now.

The live server's tests take ``event_store``: the server reads the log through the
event store's own pool, which the fixture points at the test database and closes."""

from __future__ import annotations

import http.client
import io
import json
import wsgiref.handlers
from urllib.parse import urlsplit

import pytest

from shop.wsgi import ChunkedBodies

MIB = 1024 * 1024


def answer(live_server, method: str, path: str, body: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, dict]:
    address = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


HOSTILE = [
    ("a NUL byte in a query parameter", "GET", "/api/queries/products/?q=%00", None, {},
     400, "invalid"),
    ("a garbage cursor with a NUL byte", "GET", "/api/queries/products/?cursor=garbage%00",
     None, {}, 400, "invalid"),
    ("a query string that is not UTF-8", "GET", "/api/queries/products/?q=%ff", None, {},
     400, "invalid"),
    ("a header that is not UTF-8", "GET", "/api/queries/products/", None,
     {"X-Note": "\xff"}, 400, "invalid"),
    ("a NUL byte in a header", "GET", "/api/health/", None, {"X-Note": "a\x00b"},
     400, "invalid"),
    ("a 2 MiB body", "POST", "/api/auth/register/", b"{" + b" " * (2 * MIB) + b"}",
     {"Content-Type": "application/json", "Content-Length": str(2 * MIB + 2)},
     413, "request_too_large"),
    ("a Content-Length that is not a number", "POST", "/api/auth/register/", b"{}",
     {"Content-Type": "application/json", "Content-Length": "two"}, 400, "invalid"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"),
                         [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_the_development_server_answers_a_refusal_as_itself(
        live_server, event_store, method, path, body, headers, status, code):
    got, refusal = answer(live_server, method, path, body, headers)
    assert (got, refusal["code"]) == (status, code), refusal
    assert refusal["detail"]


def test_the_development_server_keeps_the_connection_after_a_refused_query(live_server,
                                                                         event_store):
    address = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        conn.request("GET", "/api/queries/products/?q=%00")
        refused = conn.getresponse()
        assert refused.status == 400 and json.loads(refused.read())["code"] == "invalid"
        conn.request("GET", "/api/queries/products/")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_a_chunked_body_is_411_under_wsgirefs_own_handler():
    """``ChunkedBodies``' own refusal, run by ``wsgiref``'s handler: its start_response
    refuses hop-by-hop headers, as the development server's does."""

    def never(environ, start_response):
        raise AssertionError("the app behind ChunkedBodies was called")

    environ = {"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_TRANSFER_ENCODING": "chunked"}
    out, errors = io.BytesIO(), io.StringIO()
    handler = wsgiref.handlers.SimpleHandler(io.BytesIO(b"2\r\n{}\r\n0\r\n\r\n"), out,
                                             errors, environ)
    handler.run(ChunkedBodies(never))
    head, _, body = out.getvalue().partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b"411 Length Required"), (head, errors.getvalue())
    assert b"connection:" not in head.lower()
    assert json.loads(body)["code"] == "length_required"
