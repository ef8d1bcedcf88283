"""The abuse contract over HTTP against a real gunicorn (2 workers x 4 threads) with
its Redis: held threads, NaN waits, HEAD on keep-alive, a huge declared body, shared
throttle counters, Bearer tokens, and HTTPS assumed with DEBUG off."""

from __future__ import annotations

import http.client
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from catalog.services import product_register
from shop.accounts.services import token_issue
from shop.eventstore import head_position
from tests.support.http import request

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"


def timed(method: str, url: str, **kwargs):
    started = time.monotonic()
    response = request(method, url, **kwargs)
    return response, time.monotonic() - started


def test_waiting_and_hostile_clients_never_starve_the_server(services, live_db,
                                                           no_projection_trigger):
    from decimal import Decimal

    from django.contrib.auth.models import User

    # No Celery worker: the catalog projection stays behind the log on purpose.
    product_register(sku="MUG-1", name="Blue mug", price=Decimal("1.00"), stock=5)
    head = head_position()
    alice = User.objects.create_user(username="alice", password=PASSWORD)
    token = token_issue(user=alice).token
    server = services.gunicorn(
        workers=2, threads=4,
        THROTTLE_RATES="user=off,login_username=5/minute,login_ip=1000/minute")
    base = server.base_url
    products = f"{base}/api/queries/products/"

    # 16 clients wait for a position the read model has not reached, 8 for one beyond
    # the log, 8 with wait=nan: health and the product list still answer in 2 s.
    hostile = ([f"{products}?min_position={head}&wait=30"] * 16
               + [f"{products}?min_position={head + 10**6}&wait=30"] * 8
               + [f"{products}?min_position={head}&wait=nan"] * 8)
    with ThreadPoolExecutor(len(hostile) + 2) as pool:
        waits = [pool.submit(timed, "GET", url, timeout=60) for url in hostile]
        time.sleep(0.5)  # the waiters hold what they can get
        for url in (f"{base}/api/health/", products):
            response, seconds = timed("GET", url, timeout=10)
            assert response.status == 200, (url, response.status, response.body)
            assert seconds < 2.0, f"{url} took {seconds:.2f} s while clients waited"
        answers = [future.result() for future in waits]

    behind, beyond, nan = answers[:16], answers[16:24], answers[24:]
    assert all(r.status == 400 and s < 2.0 for r, s in beyond + nan), [
        (r.status, r.body, s) for r, s in beyond + nan]
    assert all(r.status == 503 and r.body["code"] == "projection_behind"
               and int(r.headers["retry-after"]) >= 1 for r, _ in behind)
    at_once = [s for _, s in behind if s < 2.0]
    assert len(at_once) >= 16 - 4, "past the cap (2 per process), a wait answers at once"

    # HEAD has no body: the next response on the same keep-alive connection is intact.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", "/api/queries/products/")
    head_response = conn.getresponse()
    assert head_response.status == 200 and head_response.read() == b""
    conn.request("GET", "/api/health/")
    assert conn.getresponse().status == 200
    conn.close()

    # A 100 MB body is refused at once, from its headers.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{")
        started = time.monotonic()
        # The whole answer, headers and body, however the segments arrive.
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        body = reply.read()
        assert reply.status == 413, body[:200]
        assert b"request_too_large" in body
        assert time.monotonic() - started < 2.0

    # Bearer works over the wire like Token.
    bearer = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    bearer.request("GET", "/api/queries/orders/", headers={"Authorization": f"Bearer {token}"})
    assert bearer.getresponse().status == 200
    bearer.close()

    # Login attempts on one name are counted across both workers (Redis): 5, then 429.
    statuses = [request("POST", f"{base}/api/auth/token/",
                        {"username": "alice", "password": "wrong"}).status for _ in range(12)]
    assert statuses == [401] * 5 + [429] * 7, statuses


def test_with_debug_off_https_is_assumed(services, live_db):
    server = services.gunicorn(workers=1, threads=2, ALLOW_HTTP="0")

    redirected = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    redirected.request("GET", "/api/queries/products/")
    response = redirected.getresponse()
    assert response.status == 301
    location = f"https://127.0.0.1:{server.port}/api/queries/products/"
    assert response.getheader("Location") == location

    proxied = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    proxied.request("GET", "/api/queries/products/", headers={"X-Forwarded-Proto": "https"})
    response = proxied.getresponse()
    assert response.status == 200
    assert "max-age=31536000" in response.getheader("Strict-Transport-Security")

    assert request("GET", f"{server.base_url}/api/health/").status == 200  # probes: HTTP
