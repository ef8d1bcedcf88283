"""A chunked request body is read, or refused with 411, never read as empty (issue 23:
a valid order sent with ``Transfer-Encoding: chunked`` was answered 400 "lines
required"). Through gunicorn it is read (413 past the body limit); through nginx
(deploy/nginx.conf) it reaches the app with its length; a server that does not mark
the body's end (Django's development server) gets 411 ``length_required``."""

from __future__ import annotations

import io
import json
import socket
from decimal import Decimal

import pytest

from shop.wsgi import ChunkedBodies
from tests.security.test_slow_clients import stack  # noqa: F401 - the fixture

PASSWORD = "correct-horse-battery"


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def exchange(port: int, path: str, body: bytes, token: str) -> tuple[int, dict]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + chunked(body)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        decoded, rest = b"", payload
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        payload = decoded
    return int(head.split()[1]), json.loads(payload)


def order_setup():
    from django.contrib.auth.models import User

    from catalog.services import product_register
    from shop.accounts.services import token_issue

    product = product_register(
        sku="MUG-1", name="Blue mug", price=Decimal("2.00"), stock=10
    ).aggregate_id
    user = User.objects.create_user(username="alice", password=PASSWORD)
    body = json.dumps(
        {"lines": [{"product_id": str(product), "quantity": 2}], "shipping_address": "1 Main St"}
    ).encode()
    return body, token_issue(user=user).token


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_chunked_order_is_placed_through_gunicorn(services, live_db):
    body, token = order_setup()
    server = services.gunicorn(workers=1, threads=2)
    status, answer = exchange(server.port, "/api/commands/orders/", body, token)
    assert status == 201, answer  # was 400 "lines required"
    assert answer["total"] == "4.00"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_chunked_order_is_placed_through_the_proxy(stack):  # noqa: F811
    body, token = order_setup()
    status, answer = exchange(stack.port, "/api/commands/orders/", body, token)
    assert status == 201, answer
    assert answer["total"] == "4.00"


def call(environ: dict) -> tuple[str, bytes, list]:
    """``ChunkedBodies`` around an app that reads the body it is handed."""
    seen: dict = {}

    def app(env, start_response):
        seen["length"] = env.get("CONTENT_LENGTH")
        seen["body"] = env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [])
        return [b"ok"]

    captured: dict = {}

    def start_response(status, headers):
        captured["status"] = status

    out = b"".join(ChunkedBodies(app)(environ, start_response))
    return captured["status"], out, [seen]


def test_without_a_marked_end_a_chunked_body_is_411():
    status, out, _ = call({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"{}")})
    assert status.startswith("411")
    assert json.loads(out) == {
        "code": "length_required",
        "detail": "Send the body with a Content-Length header.",
    }


def test_a_terminated_chunked_body_is_handed_on_with_its_length():
    status, out, [seen] = call(
        {
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input_terminated": True,
            "wsgi.input": io.BytesIO(b'{"a": 1}'),
        }
    )
    assert status.startswith("200") and out == b"ok"
    assert seen == {"length": "8", "body": b'{"a": 1}'}


def test_a_body_with_a_length_is_untouched():
    status, _, [seen] = call({"CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"{}")})
    assert status.startswith("200") and seen["body"] == b"{}"


def test_a_chunked_body_over_the_limit_is_413_unread_past_it():
    from django.conf import settings

    limit = settings.MAX_REQUEST_BODY_BYTES
    stream = io.BytesIO(b"x" * (limit + 10))
    status, out, [seen] = call(
        {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True, "wsgi.input": stream}
    )
    assert status.startswith("413") and json.loads(out)["code"] == "request_too_large"
    assert seen == {} and stream.tell() == limit + 1
