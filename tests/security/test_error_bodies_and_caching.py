"""Small items of issue 23: JSON for every error (Django's DisallowedHost and 403, the
proxy's own errors), ``Cache-Control: no-store`` on every answer that depends on the
caller, and a Content-Security-Policy on the admin with no inline script. On the old
code DisallowedHost was an HTML page, no answer said no-store and the admin had no CSP."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from django.test import Client
from django.urls import get_resolver
from rest_framework.test import APIClient

from tests.security.test_slow_clients import stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pass-word-123"


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code and body["detail"], body


def test_a_disallowed_host_is_json(db):
    response = Client().get("/api/health/", HTTP_HOST="evil.example")
    assert_json_error(response, 400, "invalid")
    assert "errors" in response.json()


def test_djangos_403_is_json(rf):
    handler = get_resolver().resolve_error_handler(403)
    response = handler(rf.get("/admin/"), exception=None)
    assert response.status_code == 403
    import json

    assert json.loads(response.content)["code"] == "permission_denied"


def no_store(response) -> bool:
    value = response.get("Cache-Control", "")
    return "no-store" in value and "private" in value


def test_answers_that_depend_on_the_caller_are_no_store(customer):
    token = APIClient().post(
        "/api/auth/token/", {"username": "john", "password": PASSWORD}, format="json"
    )
    assert token.status_code == 200, token.content
    assert no_store(token)  # a new token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['token']}")
    for path in ("/api/queries/orders/", "/api/auth/me/export/", "/api/health/"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:200])
        assert no_store(response), (path, response.get("Cache-Control"))

    refused = APIClient(HTTP_AUTHORIZATION="Bearer nope").get("/api/queries/orders/")
    assert refused.status_code == 401 and no_store(refused)
    failed = APIClient().post(
        "/api/auth/token/", {"username": "john", "password": "x"}, format="json"
    )
    assert failed.status_code == 401 and no_store(failed)


def test_a_session_is_private_too(staff):
    client = Client()
    client.force_login(staff)
    assert no_store(client.get("/api/queries/orders/"))
    assert no_store(client.get("/admin/"))


def test_anonymous_reads_may_be_cached(db):
    response = Client().get("/api/health/")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


def test_the_admin_has_a_content_security_policy_without_inline_script(db):
    response = Client().get("/admin/login/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in directives["script-src"]
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "Content-Security-Policy" not in Client().get("/api/health/")


def test_no_template_has_an_inline_script():
    inline = []
    for path in (ROOT / "templates").rglob("*.html"):
        for tag in re.findall(r"<script\b[^>]*>", path.read_text()):
            if "src=" not in tag:
                inline.append(f"{path.relative_to(ROOT)}: {tag}")
        if re.search(r"\son[a-z]+\s*=", path.read_text()):
            inline.append(f"{path.relative_to(ROOT)}: an on* handler")
    assert not inline, inline


def raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """One raw exchange with the proxy: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_proxys_own_errors_are_json(stack):  # noqa: F811
    import json

    cases = [
        (
            b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000"
            b"\r\nConnection: close\r\n\r\n",
            413,
            "request_too_large",
        ),
        (
            b"GET /api/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
            + b"a" * 20000
            + b"\r\nConnection: close\r\n\r\n",
            431,
            "invalid",
        ),
        (b"NONSENSE\r\n\r\n", 400, "invalid"),
    ]
    for request, status, code in cases:
        got, headers, body = raw(stack.port, request)
        assert got == status, (got, body[:200])
        assert headers["content-type"].startswith("application/json"), headers
        assert json.loads(body)["code"] == code
    # The app's own errors pass through untouched.
    got, headers, body = raw(
        stack.port, b"GET /api/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert got == 404 and json.loads(body)["code"] == "not_found"
    assert "x-request-id" in headers
