"""Each side survives the other's outage (``shop/databases.py``).

A database "refusing connections" is its Django alias swapped for one that connects to
port 1 (nothing listens there: refused at once); the write side's event store is
pointed there too. Both setups run these: one database behind both aliases, and the
read side in a database of its own (READ_DATABASE_URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.db import connections
from knox.models import AuthToken
from rest_framework.test import APIClient

import shop.eventstore
from projections.models import Checkpoint, ProductCatalog
from shop.databases import READ, WRITE
from tests.givens import project, register

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connections[WRITE].vendor != "postgresql", reason="needs PostgreSQL"
    ),
]

PRODUCTS = "/api/queries/products/"


@contextlib.contextmanager
def refusing(alias: str) -> Iterator[None]:
    """The database behind ``alias`` refuses every connection until the block ends."""
    original = connections[alias]
    settings_dict = {**original.settings_dict, "PORT": "1",
                     "OPTIONS": {**original.settings_dict.get("OPTIONS", {}),
                                 "connect_timeout": 1}}
    connections[alias] = original.__class__(settings_dict, alias)
    try:
        yield
    finally:
        connections[alias].close()
        connections[alias] = original


@contextlib.contextmanager
def event_store_refusing(monkeypatch) -> Iterator[None]:
    """The event store (the write side's database, its own pool) refuses connections."""
    real_env = shop.eventstore.event_store_env
    fixture_app = shop.eventstore._app
    shop.eventstore._app = None
    monkeypatch.setattr(shop.eventstore, "event_store_env", lambda: {
        **real_env(), "POSTGRES_PORT": "1", "POSTGRES_CONNECT_TIMEOUT": "1"})
    try:
        yield
    finally:
        if shop.eventstore._app is not None:
            shop.eventstore._app.close()
        shop.eventstore._app = fixture_app
        monkeypatch.setattr(shop.eventstore, "event_store_env", real_env)


def staff_health(staff) -> tuple[int, dict]:
    client = APIClient()
    client.force_authenticate(staff)
    response = client.get("/api/health/")
    return response.status_code, response.json()


def test_commands_are_saved_while_the_read_database_is_down_and_projected_after(
    event_store, staff, client_for
):
    mug = register("MUG-1", stock=10)
    project()
    with refusing(READ):
        response = client_for(staff).post(
            "/api/commands/products/",
            {"sku": "PEN-1", "name": "Black pen", "price": "2.50", "stock": 3},
            format="json",
        )
        assert response.status_code == 201, response.content
        response = client_for(staff).post(
            f"/api/commands/products/{mug}/restock", {"quantity": 5}, format="json"
        )
        assert response.status_code == 200, response.content
        position = response.json()["position"]

        status, body = staff_health(staff)
        assert (status, body["status"]) == (200, "degraded")
        assert body["database"] == "ok" and body["read_database"].startswith("error:")
        assert any("read side's database is unreachable" in r for r in body["reasons"])
        # A query cannot be served, but says so: 503, never 500.
        response = APIClient().get(PRODUCTS)
        assert response.status_code == 503, response.content
        assert response.json()["code"] == "service_unavailable"

    # Back: the read side catches up by itself (the next trigger or sweep does this).
    project()
    assert Checkpoint.objects.position_of("product_catalog") >= position
    stock = dict(ProductCatalog.objects.values_list("sku", "stock"))
    assert stock == {"MUG-1": 15, "PEN-1": 3}
    assert staff_health(staff)[1]["status"] == "ok"


def test_anonymous_product_queries_answer_while_the_write_database_is_down(
    event_store, staff, customer, monkeypatch
):
    register("MUG-1", stock=10)
    project()
    _token, key = AuthToken.objects.create(customer)
    with refusing(WRITE), event_store_refusing(monkeypatch):
        response = APIClient().get(PRODUCTS)
        assert response.status_code == 200, response.content
        assert [p["sku"] for p in response.json()["results"]] == ["MUG-1"]
        response = APIClient().get(PRODUCTS, {"min_position": 1})
        assert response.status_code == 200, response.content

        # The token is looked up in the write side's database: 503, never 500.
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        response = client.get("/api/queries/orders/")
        assert response.status_code == 503, response.content
        assert response.json()["code"] == "service_unavailable"

        response = APIClient().get("/api/health/")
        assert (response.status_code, response.json()) == (200, {"status": "degraded"})

    assert APIClient().get("/api/health/").json() == {"status": "ok"}


def test_health_names_the_unreachable_write_database(event_store, staff, monkeypatch):
    with event_store_refusing(monkeypatch):
        status, body = staff_health(staff)
    assert (status, body["status"]) == (200, "degraded")
    assert body["database"].startswith("error:") and body["read_database"] == "ok"
    assert any("write side's database is unreachable" in r for r in body["reasons"])


def test_health_is_down_when_both_databases_are_unreachable(event_store, monkeypatch):
    with refusing(READ), event_store_refusing(monkeypatch):
        response = APIClient().get("/api/health/")
    assert (response.status_code, response.json()) == (503, {"status": "down"})
