"""Contention: keyed and unkeyed commands racing on one hot aggregate, over HTTP.

Every case runs against a live gunicorn (3 workers x 4 threads) with the throttles
off, as a client would send it, and asserts the same things: no 5xx, exactly one event
per 2xx, a byte-identical replay (with ``Idempotent-Replayed: true``) for every request
resent with its key, and no traceback in the server's log.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.processes import wait_until
from tests.support.readside import decode, notifications

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


@dataclass
class Command:
    kind: str
    path: str
    body: dict
    token: str
    key: str | None = None
    if_match: str | None = None


@dataclass
class Answer:
    command: Command
    status: int
    raw: bytes
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def json(self) -> Any:
        return httpx.Response(self.status, content=self.raw).json() if self.raw else None

    @property
    def code(self) -> str | None:
        body = self.json
        return body.get("code") if isinstance(body, dict) else None


def send(client: httpx.Client, command: Command) -> Answer:
    headers = {"Authorization": f"Token {command.token}"}
    if command.key is not None:
        headers["Idempotency-Key"] = command.key
    if command.if_match is not None:
        headers["If-Match"] = command.if_match
    started = time.monotonic()
    try:
        response = client.post(command.path, json=command.body, headers=headers)
    except httpx.HTTPError as exc:  # no answer at all counts as a server failure
        return Answer(command, 0, repr(exc).encode(), seconds=time.monotonic() - started)
    return Answer(command, response.status_code, response.content,
                  {k.lower(): v for k, v in response.headers.items()},
                  seconds=time.monotonic() - started)


def send_together(base_url: str, lanes: list[list[Command]]) -> list[Answer]:
    """Each lane's commands in order, on a thread of its own; the lanes start at once."""
    barrier = threading.Barrier(len(lanes))

    def run(lane: list[Command]) -> list[Answer]:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            barrier.wait(timeout=30)
            return [send(client, command) for command in lane]

    with ThreadPoolExecutor(len(lanes)) as pool:
        return [answer for answers in pool.map(run, lanes) for answer in answers]


def key() -> str:
    return f"k-{uuid.uuid4()}"


def outcomes(answers: list[Answer]) -> Counter:
    return Counter((a.command.kind, a.status, a.code) for a in answers)


def assert_no_server_error(answers: list[Answer], web) -> None:
    failed = [(a.command.kind, a.status, a.raw[:300]) for a in answers
              if a.status == 0 or a.status >= 500]
    assert not failed, (failed[:5], len(failed), web.log_tail())


def assert_no_traceback(web) -> None:
    log = web.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-6000:]


def assert_replays(base_url: str, answers: list[Answer]) -> None:
    """Every keyed command resent with its key answers the first answer byte for byte,
    marked as a replay, and appends nothing."""
    keyed = [a for a in answers if a.command.key is not None]
    before = len(notifications())
    again = send_together(base_url, [[a.command for a in keyed[i::4]] for i in range(4)])
    firsts = {a.command.key: a for a in keyed}
    for answer in again:
        first = firsts[answer.command.key]
        assert (answer.status, answer.raw) == (first.status, first.raw), (
            answer.command.kind, first.status, first.raw, answer.status, answer.raw)
        assert answer.headers.get("idempotent-replayed") == "true", answer.headers
    assert len(notifications()) == before


def events_after(position: int) -> list[tuple[int, Any]]:
    return [(n.id, decode(n)) for n in notifications() if n.id > position]


def type_name(event: Any) -> str:
    return ".".join(type(event).__qualname__.split(".")[-2:])


class Shop:
    """The commands of the contract, over HTTP, for setting the scene."""

    def __init__(self, base_url: str, staff: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.staff = staff

    def post(self, path: str, body: dict, token: str | None = None) -> dict:
        response = self.client.post(path, json=body,
                                    headers={"Authorization": f"Token {token or self.staff}"})
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def product(self, sku: str, stock: int = 1_000_000) -> str:
        return self.post("/api/commands/products/", {"sku": sku, "name": f"Item {sku}",
                                                     "price": "10.00", "stock": stock})[
            "product_id"]

    def order(self, product_id: str, token: str, address: str = "1 Main St") -> str:
        return self.post("/api/commands/orders/", {
            "lines": [{"product_id": product_id, "quantity": 1}],
            "shipping_address": address}, token)["order_id"]

    def shipment(self, order_id: str) -> str:
        return self.post("/api/commands/shipments/",
                         {"order_id": order_id, "carrier": "DHL"})["shipment_id"]

    def head(self) -> int:
        return max((n.id for n in notifications()), default=0)


@pytest.fixture
def shop(services, api_users):
    web = services.gunicorn(workers=3, threads=4)
    shop = Shop(web.base_url, api_users["staff"].token)
    shop.web = web
    yield shop
    shop.client.close()


def order_command(product_id: str, token: str, n: int, *, keyed: bool = True) -> Command:
    return Command("order", "/api/commands/orders/", {
        "lines": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": f"{n} Harbour Road"}, token, key() if keyed else None)


def test_keyed_commands_racing_a_flash_sale(services, api_users, shop):
    """Load: one hot product; 6 threads place keyed orders, 3 send keyed restocks, 2
    keyed reprices, 1 keyed renames and 1 keyed cancels of earlier orders, with a Celery
    worker and beat running. Every command is accepted (none 5xx, none
    concurrent_update), appends exactly one event, and replays byte for byte."""
    services.worker()
    services.beat(PROJECTION_SWEEP_SECONDS="1")
    staff, customers = api_users["staff"].token, [c.token for c in api_users["customers"]]
    product_id = shop.product("HOT-1")
    to_cancel = [shop.order(product_id, customers[i % 3]) for i in range(40)]
    start = shop.head()
    base = f"/api/commands/products/{product_id}"
    prices = (f"{11 + i // 100}.{i % 100:02d}" for i in itertools.count())
    lanes = (
        [[order_command(product_id, customers[lane % 3], lane * 100 + i) for i in range(25)]
         for lane in range(6)]
        + [[Command("restock", f"{base}/restock", {"quantity": 2}, staff, key())
            for _ in range(40)] for _ in range(3)]
        + [[Command("reprice", f"{base}/reprice", {"price": next(prices)}, staff, key())
            for _ in range(40)] for _ in range(2)]
        + [[Command("rename", f"{base}/rename", {"name": f"Hot item {i}"}, staff, key())
            for i in range(30)]]
        + [[Command("cancel", f"/api/commands/orders/{order_id}/cancel", {},
                    customers[i % 3], key()) for i, order_id in enumerate(to_cancel)]]
    )
    answers = send_together(shop.web.base_url, lanes)

    assert_no_server_error(answers, shop.web)
    assert outcomes(answers) == Counter({
        ("order", 201, None): 150, ("restock", 200, None): 120,
        ("reprice", 200, None): 80, ("rename", 200, None): 30, ("cancel", 200, None): 40,
    }), shop.web.log_tail()
    appended = Counter(type_name(event) for _, event in events_after(start))
    assert appended == Counter({
        "Order.Placed": 150, "Product.StockReserved": 150, "Product.Restocked": 120,
        "Product.Repriced": 80, "Product.Renamed": 30, "Order.Cancelled": 40,
        "Product.StockReleased": 40,
    })
    assert_replays(shop.web.base_url, answers)
    assert_no_traceback(shop.web)


def test_keyed_shipment_status_changes_racing_each_other(api_users, shop):
    """Two staff clients move each of 20 shipments to the same next status at the same
    instant, each with its own key: exactly one of each pair moves it (200), the other
    is refused with 409 invalid_transition; delivering also delivers the order once."""
    customers = [c.token for c in api_users["customers"]]
    staff = api_users["staff"].token
    product_id = shop.product("SHIP-1")
    shipments = [shop.shipment(shop.order(product_id, customers[i % 3])) for i in range(20)]
    for status in ("dispatched", "in_transit", "delivered"):
        start = shop.head()
        lanes = [[Command(status, f"/api/commands/shipments/{shipment_id}/status",
                          {"status": status}, staff, key()) for shipment_id in shipments]
                 for _ in range(2)]
        answers = send_together(shop.web.base_url, lanes)
        assert_no_server_error(answers, shop.web)
        assert outcomes(answers) == Counter({(status, 200, None): 20,
                                             (status, 409, "invalid_transition"): 20})
        appended = Counter(type_name(event) for _, event in events_after(start))
        moved = {"dispatched": "Shipment.Dispatched", "in_transit": "Shipment.WentInTransit",
                 "delivered": "Shipment.Delivered"}[status]
        expected = Counter({moved: 20})
        if status == "delivered":
            expected["Order.Delivered"] = 20
        assert appended == expected
        assert_replays(shop.web.base_url, answers)
    assert_no_traceback(shop.web)


class Background:
    """Unkeyed orders and restocks on one product from a few threads, until stopped."""

    def __init__(self, base_url: str, product_id: str, staff: str, customer: str) -> None:
        self.stop = threading.Event()
        self.answers: list[Answer] = []
        base = f"/api/commands/products/{product_id}"
        self.lanes = [
            lambda n: order_command(product_id, customer, 10_000 + n, keyed=False),
            lambda n: order_command(product_id, customer, 20_000 + n, keyed=False),
            lambda n: Command("restock", f"{base}/restock", {"quantity": 1}, staff),
        ]
        self.base_url = base_url
        self.threads = [threading.Thread(target=self.run, args=(make,), daemon=True)
                        for make in self.lanes]

    def run(self, make) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                self.answers.append(send(client, make(n)))

    def __enter__(self) -> Background:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_same_key_bursts_under_background_load(api_users, shop):
    """12 identical requests with one key, released together while orders and restocks
    for the same product run in the background: the command runs once and every one of
    the 12 gets the same status and the same bytes, 11 of them marked as replays."""
    staff = api_users["staff"].token
    customer = api_users["customers"][0].token
    product_id = shop.product("BURST-1")
    base = f"/api/commands/products/{product_id}"
    with Background(shop.web.base_url, product_id, staff, customer) as background:
        for round_ in range(3):
            order_id = shop.order(product_id, customer, f"cancel me {round_}")
            to_ship = shop.order(product_id, customer, f"ship me {round_}")
            bursts = {
                "register": Command("register", "/api/commands/products/", {
                    "sku": f"NEW-{round_}", "name": "New", "price": "1.00", "stock": 5},
                    staff),
                "ship": Command("ship", "/api/commands/shipments/",
                                {"order_id": to_ship, "carrier": "DHL"}, staff),
                "restock": Command("restock", f"{base}/restock", {"quantity": 900 + round_},
                                   staff),
                "reprice": Command("reprice", f"{base}/reprice",
                                   {"price": f"{50 + round_}.25"}, staff),
                "rename": Command("rename", f"{base}/rename", {"name": f"Burst {round_}"},
                                  staff),
                "order": order_command(product_id, customer, 30_000 + round_, keyed=False),
                "cancel": Command("cancel", f"/api/commands/orders/{order_id}/cancel",
                                  {"reason": "burst"}, customer),
            }
            for kind, command in bursts.items():
                command.key = key()
                start = shop.head()
                answers = send_together(shop.web.base_url, [[command]] * 12)
                assert_no_server_error(answers, shop.web)
                firsts = {(a.status, a.raw) for a in answers}
                assert len(firsts) == 1, (kind, firsts)
                assert answers[0].status in (200, 201), (kind, answers[0].raw)
                replayed = [a.headers.get("idempotent-replayed") for a in answers]
                assert replayed.count("true") == 11, (kind, replayed)
                mine = [event for _, event in events_after(start)
                        if _belongs_to(kind, event, command, round_)]
                assert len(mine) == 1, (kind, mine)
    assert_no_server_error(background.answers, shop.web)
    assert background.answers, "the background load sent nothing"
    assert_no_traceback(shop.web)


def _belongs_to(kind: str, event: Any, command: Command, round_: int) -> bool:
    name = type_name(event)
    if kind == "register":
        return name == "Product.Registered" and event.sku == f"NEW-{round_}"
    if kind == "ship":
        return name == "Shipment.Created" and str(event.order_id) == command.body["order_id"]
    if kind == "restock":
        return name == "Product.Restocked" and event.quantity == 900 + round_
    if kind == "reprice":
        return name == "Product.Repriced" and event.price == Decimal(f"{50 + round_}.25")
    if kind == "rename":
        return name == "Product.Renamed" and event.name == f"Burst {round_}"
    if kind == "order":
        return (name == "Order.Placed"
                and event.shipping_address == f"{30_000 + round_} Harbour Road")
    return name == "Order.Cancelled" and event.reason == "burst"


def lock_key(aggregate_id: str) -> int:
    from shop.unit_of_work import lock_key as app_lock_key

    return app_lock_key(uuid.UUID(aggregate_id))


@pytest.fixture
def pg():
    """A connection of the test's own to the test database (autocommit)."""
    from django.db import connection

    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], host=settings["HOST"] or "127.0.0.1",
                         port=settings["PORT"] or 5432, user=settings["USER"] or "postgres",
                         autocommit=True) as conn:
        yield conn


def waiting_backends(pg) -> list[int]:
    """Backends of other sessions waiting for an advisory lock."""
    rows = pg.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                      "AND pid <> pg_backend_pid()").fetchall()
    return [row[0] for row in rows]


def test_a_transient_conflict_is_not_replayed(services, api_users, pg):
    """A keyed order that times out waiting for its product (another writer holds it)
    answers 409 concurrent_update; the same request retried with the same key once the
    product is free runs (it is not a replay of the 409) and appends its events."""
    web = services.gunicorn(workers=1, threads=4, COMMAND_LOCK_WAIT_SECONDS="1")
    shop = Shop(web.base_url, api_users["staff"].token)
    product_id = shop.product("SLOW-1")
    order = order_command(product_id, api_users["customers"][0].token, 1)
    with httpx.Client(base_url=web.base_url, timeout=60) as client:
        pg.execute("SELECT pg_advisory_lock(%s)", [lock_key(product_id)])
        try:
            first = send(client, order)
        finally:
            pg.execute("SELECT pg_advisory_unlock_all()")
        assert (first.status, first.code) == (409, "concurrent_update"), first.raw
        assert first.seconds < 5, first.seconds
        start = shop.head()
        again = send(client, order)
    assert again.status == 201, again.raw
    assert "idempotent-replayed" not in again.headers
    assert [type_name(e) for _, e in events_after(start)] == [
        "Order.Placed", "Product.StockReserved"]
    assert_no_traceback(web)


def test_a_dead_lock_holder_backend_is_dropped_at_once(services, api_users, pg):
    """The backend of a keyed order that is waiting for its product's lock is killed:
    the request answers 503 at once (its connection is dropped, not retried on), the
    shop keeps serving, and the same key runs the command when retried."""
    web = services.gunicorn(workers=1, threads=4)
    shop = Shop(web.base_url, api_users["staff"].token)
    product_id = shop.product("DEAD-1")
    order = order_command(product_id, api_users["customers"][0].token, 1)
    pg.execute("SELECT pg_advisory_lock(%s)", [lock_key(product_id)])
    try:
        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=web.base_url,
                                                         timeout=60) as client:
            pending = pool.submit(send, client, order)
            [victim] = wait_until(lambda: waiting_backends(pg), timeout=10,
                                  what="the restock to wait for the product's lock")
            killed_at = time.monotonic()
            pg.execute("SELECT pg_terminate_backend(%s)", [victim])
            answer = pending.result(timeout=30)
            answered_after = time.monotonic() - killed_at
    finally:
        pg.execute("SELECT pg_advisory_unlock_all()")
    assert (answer.status, answer.code) == (503, "service_unavailable"), answer.raw
    assert answered_after < 1.0, answered_after
    start = shop.head()
    with httpx.Client(base_url=web.base_url, timeout=60) as client:
        again = send(client, order)
        other = send(client, order_command(product_id, order.token, 2, keyed=False))
    assert (again.status, other.status) == (201, 201), (again.raw, other.raw)
    assert "idempotent-replayed" not in again.headers
    assert [type_name(e) for _, e in events_after(start)] == [
        "Order.Placed", "Product.StockReserved"] * 2
    assert_no_traceback(web)


def test_if_match_on_another_customers_order_is_not_found(api_users, shop):
    """Another customer's order answers 404 whatever If-Match says, with or without a
    key, and the answer reveals no version or status."""
    john, jane = (c.token for c in api_users["customers"][:2])
    product_id = shop.product("PROBE-1")
    order_id = shop.order(product_id, john)
    start = shop.head()
    probes = [Command("cancel", f"/api/commands/orders/{order_id}/cancel", {}, jane,
                      key=k, if_match=version)
              for version in ('"1"', '"2"', '"99"') for k in (None, key())]
    with httpx.Client(base_url=shop.web.base_url, timeout=60) as client:
        answers = [send(client, probe) for probe in probes]
    for answer in answers:
        assert (answer.status, answer.code) == (404, "not_found"), answer.raw
        assert b"version" not in answer.raw.lower() and b"placed" not in answer.raw.lower()
    assert events_after(start) == []
    assert_no_traceback(shop.web)
