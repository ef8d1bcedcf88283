"""40 customers race for the last 10 units: exactly 10 orders win, stock never goes
below zero, and every loser is told insufficient_stock (not concurrent_update)."""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from rest_framework.test import APIClient

from catalog.domain import Product
from catalog.services import product_register
from shop.unit_of_work import load

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
)

BUYERS = 40
STOCK = 10


@pytest.mark.django_db(transaction=True)
def test_forty_simultaneous_orders_for_ten_units(event_store, no_projection_trigger):
    # The write side alone: projections are not triggered from 40 threads here.
    # No password hashing for 40 users: the clients are force-authenticated.
    users = User.objects.bulk_create(User(username=f"buyer{i}") for i in range(BUYERS))
    product_id = product_register(
        sku="LAST-10", name="Scarce mug", price=Decimal("9.99"), stock=STOCK
    ).aggregate_id
    body = {"lines": [{"product_id": str(product_id), "quantity": 1}],
            "shipping_address": "1 Main St"}
    start = threading.Barrier(BUYERS)
    results: list[tuple[int, str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def buy(user) -> None:
        try:
            client = APIClient()
            client.force_authenticate(user)
            start.wait(timeout=30)
            response = client.post("/api/commands/orders/", body, format="json")
            outcome = (response.status_code, response.json().get("code", "ok"))
            with lock:
                results.append(outcome)
        except BaseException as exc:  # reported below, with the thread's outcome
            with lock:
                failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=buy, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not failures, failures
    assert Counter(results) == {(201, "ok"): STOCK, (409, "insufficient_stock"): BUYERS - STOCK}
    product = load(product_id, Product)
    assert (product.stock, product.reserved, product.available) == (STOCK, STOCK, 0)
    assert product.version == 1 + STOCK
