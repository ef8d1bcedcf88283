"""Lost updates: concurrent writers on one product must each land exactly once."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from uuid import UUID

import pytest

from tests.givens import project
from tests.support.http import run_load
from tests.support.readside import (
    assert_accepted_are_durable,
    assert_caught_up_and_healthy,
    assert_matches_rebuild,
    event_type_counts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

INITIAL_STOCK = 500
RENAMES, REPRICES, RESTOCKS, ORDERS = 30, 30, 10, 40
RESTOCK_QUANTITY = 5
PROCESSES, THREADS = 4, 10

EVENT_OF = {"rename": "Renamed", "reprice": "Repriced", "restock": "Restocked"}


def test_concurrent_writers_on_one_product_lose_nothing(services, api_users):
    """Fault: none; the hazard is optimistic concurrency on one aggregate.
    Load: 110 commands on one product, shuffled and sent at once from 4 OS processes x
    10 threads over HTTP to gunicorn: 30 renames, 30 reprices, 10 restocks (staff) and
    40 orders of 1-3 units (customers).
    Must survive: every accepted command. No 5xx; a command is either accepted or a
    409 concurrent_update; each accepted command's ``position`` is its own event in the
    log; the log holds exactly one event per accepted command; the aggregate's name and
    price are those of the last accepted rename/reprice in log order and its stock adds
    up; the catalog read model and the order history (after catch-up) agree with it and
    with a rebuild.
    """
    from catalog.domain import Product
    from catalog.services import product_register
    from projections.models import OrderHistory, ProductCatalog
    from shop.eventstore import get_app

    product_id = product_register(sku="HOT-1", name="Hot item", price=Decimal("10.00"),
                                  stock=INITIAL_STOCK).aggregate_id
    web = services.gunicorn()
    staff, customers = api_users["staff"], api_users["customers"]
    rng = random.Random(20261126)
    base = f"/api/commands/products/{product_id}"
    commands = (
        [{"method": "POST", "path": f"{base}/rename", "token": staff.token,
          "body": {"name": f"Name {i}"}, "tag": ["rename", f"Name {i}"]}
         for i in range(RENAMES)]
        + [{"method": "POST", "path": f"{base}/reprice", "token": staff.token,
            "body": {"price": f"{11 + i}.{i:02d}"}, "tag": ["reprice", f"{11 + i}.{i:02d}"]}
           for i in range(REPRICES)]
        + [{"method": "POST", "path": f"{base}/restock", "token": staff.token,
            "body": {"quantity": RESTOCK_QUANTITY}, "tag": ["restock", RESTOCK_QUANTITY]}
           for _ in range(RESTOCKS)]
        + [{"method": "POST", "path": "/api/commands/orders/",
            "token": customers[i % len(customers)].token,
            "body": {"lines": [{"product_id": str(product_id), "quantity": 1 + i % 3}],
                     "shipping_address": f"{i} High St"},
            "tag": ["order", 1 + i % 3]}
           for i in range(ORDERS)]
    )
    rng.shuffle(commands)
    batches = [commands[p::PROCESSES] for p in range(PROCESSES)]

    responses = run_load(web.base_url, batches, threads=THREADS)

    assert len(responses) == len(commands)
    bad = [(r.tag, r.status, r.body, r.error) for r in responses
           if not (r.ok or (r.status == 409 and r.body.get("code") == "concurrent_update"))]
    assert not bad, (bad, web.log_tail())

    def belongs(resp, event) -> bool:
        kind = resp.tag[0]
        if kind == "order":
            order_id = UUID(resp.body["order_id"])
            return getattr(event, "order_id", event.originator_id) == order_id
        return (event.originator_id == product_id
                and type(event).__qualname__ == f"Product.{EVENT_OF[kind]}"
                and event.originator_version == resp.body["version"])

    accepted = [r for r in responses if r.ok]
    log = assert_accepted_are_durable(accepted, belongs)
    kinds = Counter(r.tag[0] for r in accepted)
    counts = event_type_counts()
    assert counts["Product.Renamed"] == kinds["rename"]
    assert counts["Product.Repriced"] == kinds["reprice"]
    assert counts["Product.Restocked"] == kinds["restock"]
    assert counts["Order.Placed"] == counts["Product.StockReserved"] == kinds["order"]
    assert sum(counts.values()) == 1 + len(accepted) + kinds["order"]
    assert len(log) == sum(counts.values())

    def last(kind: str):
        winners = sorted((r for r in accepted if r.tag[0] == kind),
                         key=lambda r: r.body["position"])
        return winners[-1].tag[1] if winners else None

    product = get_app().repository.get(product_id)
    assert isinstance(product, Product)
    assert product.name == (last("rename") or "Hot item")
    assert product.price == Decimal(last("reprice") or "10.00")
    assert product.stock == INITIAL_STOCK + RESTOCK_QUANTITY * kinds["restock"]
    assert product.reserved == sum(r.tag[1] for r in accepted if r.tag[0] == "order")
    assert product.version == 1 + len(accepted)

    project()
    assert_caught_up_and_healthy()
    row = ProductCatalog.objects.get(product_id=product_id)
    assert (row.name, row.price, row.stock_available, row.version) == (
        product.name, product.price, product.available, product.version)
    orders = list(OrderHistory.objects.all())
    assert len(orders) == kinds["order"]
    assert {line["product_name"] for o in orders for line in o.lines} == {product.name}
    assert_matches_rebuild()
