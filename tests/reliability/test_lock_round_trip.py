"""Contention on what a command's lock round trip reads besides its locks.

A unit of work takes its first locks, reads its customer's data key and the events
saved since the versions its process caches of the locked aggregates, all in one
round trip (``PostgresTransaction.lock``); ``load`` then applies those events instead
of asking again, and decodes them without opening their metadata. These races run it
where it can go wrong: gunicorn's 3 workers x 4 threads, each with its own aggregate
cache, orders from three customers on two hot products while staff reprice and
restock them. Each order must be priced at the price the log says was current when it
was saved (a stale cached product would price it at an older one), every event's
metadata must name its own actor, and nothing may answer 5xx.
"""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal

import pytest

from tests.reliability.test_contention import (
    Command,
    Shop,
    assert_no_server_error,
    assert_no_traceback,
    assert_replays,
    key,
    outcomes,
    send_together,
    type_name,
)
from tests.support.readside import notifications

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


def order_of_both(first: str, second: str, token: str, n: int, keyed: bool) -> Command:
    return Command("order", "/api/commands/orders/", {
        "lines": [{"product_id": first, "quantity": 1}, {"product_id": second, "quantity": 2}],
        "shipping_address": f"{n} Lock Lane"}, token, key() if keyed else None)


def decoded_after(position: int) -> list[tuple[int, object, object]]:
    from shop.eventstore import get_app

    mapper = get_app().mapper
    return [(n.id, *mapper.decode(n)) for n in notifications() if n.id > position]


def test_orders_racing_reprices_and_restocks_on_cached_hot_products(services, api_users):
    web = services.gunicorn(workers=3, threads=4)
    staff = api_users["staff"].token
    customers = api_users["customers"]
    shop = Shop(web.base_url, staff)
    first, second = shop.product("LOCK-A"), shop.product("LOCK-B")
    # Warm every worker's cache with both products (and every customer's key).
    warm = [[order_of_both(first, second, customers[i % 3].token, i, keyed=False)]
            for i in range(12)]
    assert {a.status for a in send_together(web.base_url, warm)} == {201}
    start = max(n.id for n in notifications())

    prices = (f"{20 + i // 100}.{i % 100:02d}" for i in itertools.count(1))
    lanes = (
        [[order_of_both(first, second, customers[lane % 3].token, lane * 100 + i,
                        keyed=i % 2 == 0) for i in range(20)] for lane in range(6)]
        + [[Command("reprice", f"/api/commands/products/{first}/reprice",
                    {"price": next(prices)}, staff, key()) for _ in range(15)]
           for _ in range(2)]
        + [[Command("restock", f"/api/commands/products/{second}/restock", {"quantity": 3},
                    staff) for _ in range(15)]]
    )
    answers = send_together(web.base_url, lanes)

    assert_no_server_error(answers, web)
    assert outcomes(answers) == Counter({("order", 201, None): 120,
                                         ("reprice", 200, None): 30,
                                         ("restock", 200, None): 15}), web.log_tail()
    events = decoded_after(start)
    assert Counter(type_name(event) for _, event, _ in events) == Counter({
        "Order.Placed": 120, "Product.StockReserved": 240, "Product.Repriced": 30,
        "Product.Restocked": 15})

    # Each order is priced at the price current when it was saved, in log order.
    price = Decimal("10.00")
    names = {c.id: c.username for c in customers}
    for _, event, metadata in events:
        name = type_name(event)
        if name == "Product.Repriced":
            price = event.price
            assert metadata.actor.kind == "staff"
        elif name == "Order.Placed":
            unit_prices = {str(line["product_id"]): line["unit_price"] for line in event.lines}
            assert unit_prices == {first: price, second: Decimal("10.00")}, event
            assert event.customer == names[event.customer_id]
            assert event.shipping_address.endswith("Lock Lane")
        if name in ("Order.Placed", "Product.StockReserved"):
            # The customer's name, sealed with the key read in the lock's round trip.
            assert metadata.actor.kind == "customer"
            assert metadata.actor.username == names[metadata.actor.user_id], metadata

    # Every product version was applied exactly once, in order, by whichever worker.
    for product_id in (first, second):
        versions = [event.originator_version for _, event, _ in events
                    if str(event.originator_id) == product_id]
        assert versions == list(range(versions[0], versions[0] + len(versions)))
    reserved = Counter()
    for _, event, _ in events:
        if type_name(event) == "Product.StockReserved":
            reserved[str(event.originator_id)] += event.quantity
    assert reserved == {first: 120, second: 240}

    assert_replays(web.base_url, answers)
    assert_no_traceback(web)


def test_orders_racing_their_customers_forget(services, api_users):
    """A customer's orders (their key read with the order's first locks, the products'
    new events applied without opening their metadata) race their own forget-me on 3
    gunicorn workers: nothing answers 5xx, and every order is placed (201) or refused
    once the account is gone (401). (On ``main`` such orders answered 500: loading a
    product opened the metadata of its events, sealed with a key the race had replaced.)
    An order authenticated before the forget commits finds the key's tombstone and
    makes no new key (tests/integration/test_personal_data.py races that directly)."""
    web = services.gunicorn(workers=3, threads=4)
    zelda = api_users["customers"][0]
    shop = Shop(web.base_url, api_users["staff"].token)
    first, second = shop.product("FORGET-A"), shop.product("FORGET-B")
    warm = [[order_of_both(first, second, zelda.token, i, keyed=False)] for i in range(6)]
    assert {a.status for a in send_together(web.base_url, warm)} == {201}

    orders = [[order_of_both(first, second, zelda.token, lane * 100 + i, keyed=i % 2 == 0)
               for i in range(15)] for lane in range(5)]
    forget = [[Command("order", "/api/commands/orders/", {
        "lines": [{"product_id": first, "quantity": 1}], "shipping_address": "1 Early St"},
        zelda.token)] * 3 + [Command("forget", "/api/auth/me/forget/",
                                     {"password": "x-pass-word-123"}, zelda.token)]]
    answers = send_together(web.base_url, orders + forget)

    assert_no_server_error(answers, web)
    statuses = Counter((a.command.kind, a.status) for a in answers)
    assert statuses[("forget", 204)] == 1, statuses
    assert set(statuses) <= {("order", 201), ("order", 401), ("forget", 204)}, statuses
    # Another customer's orders of the same products still load and are placed.
    other = [[order_of_both(first, second, api_users["customers"][1].token, 900 + i,
                            keyed=False)] for i in range(6)]
    assert {a.status for a in send_together(web.base_url, other)} == {201}
    assert_no_traceback(web)
