"""Stored documents equal the serializer output they replace, for every state of an
order and a product; a rebuild, old (upcast) events and racing renames, forgets and
placements all leave them equal; the HTTP bytes are those of the serializer path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection, connections
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from catalog.services import product_rename, product_reprice, product_restock
from orders.services import order_cancel
from projections.apis import OrderOutputSerializer, ProductListApi
from projections.models import OrderHistory, ProductCatalog
from projections.registry import get_projector
from projections.runner import catch_up
from projections.shadow import rebuild
from shipping.services import shipment_change_status, shipment_create
from shop.accounts.privacy import customer_forget
from shop.databases import READ
from tests.givens import place, project, register
from tests.support.prepared import prepared_statements
from tests.support.threads import background

SERIALIZERS = {OrderHistory: OrderOutputSerializer, ProductCatalog: ProductListApi.OutputSerializer}


def serialized(row) -> str:
    """What the API's serializer and JSON renderer make of the row as read back."""
    return JSONRenderer().render(SERIALIZERS[type(row)](row).data).decode()


def generic(row) -> str:
    """The same by DRF's own ``Serializer.to_representation`` (each field's
    ``get_attribute`` and ``to_representation``), which a row serializer's plan (the
    projectors' fast path, ``RowSerializer.represent``) must equal byte for byte."""
    serializer = SERIALIZERS[type(row)](row)
    return JSONRenderer().render(
        serializers.Serializer.to_representation(serializer, row)).decode()


def mismatches(model) -> list:
    return [(row.pk, row.document, serialized(row), generic(row))
            for row in model.objects.all()
            if not row.document == serialized(row) == generic(row)]


def ship(order, *statuses):
    shipment = shipment_create(order_id=order, carrier="DHL").aggregate_id
    for status in statuses:
        shipment_change_status(shipment_id=shipment, status=status)


def forget(user):
    customer_forget(user=user)


# Each case: what happens to one order and its products (after both are registered).
ORDER_CASES: dict[str, Callable] = {
    "placed": lambda c, mug, pen: place(c, (mug, 1)),
    "two lines": lambda c, mug, pen: place(c, (mug, 2), (pen, 3)),
    "cancelled": lambda c, mug, pen: order_cancel(
        order_id=place(c, (mug, 1)), user_id=c.pk, is_staff=False),
    "shipment created": lambda c, mug, pen: ship(place(c, (mug, 1))),
    "dispatched": lambda c, mug, pen: ship(place(c, (mug, 1)), "dispatched"),
    "in transit": lambda c, mug, pen: ship(place(c, (mug, 1)), "dispatched", "in_transit"),
    "delivered": lambda c, mug, pen: ship(
        place(c, (mug, 1)), "dispatched", "in_transit", "delivered"),
    "product renamed after": lambda c, mug, pen: (
        place(c, (mug, 1), (pen, 1)), product_rename(product_id=mug, name="Sky mug \u2028 ü")),
    "customer forgotten": lambda c, mug, pen: (place(c, (mug, 1)), forget(c)),
    "customer forgotten later": lambda c, mug, pen: (place(c, (mug, 1)), project(), forget(c)),
    "renamed later": lambda c, mug, pen: (
        place(c, (pen, 1)), project(), product_rename(product_id=pen, name="Ink pen")),
    "forgotten, then shipped": lambda c, mug, pen: ship(
        (place(c, (mug, 1)), forget(c))[0], "dispatched"),
}

PRODUCT_CASES: dict[str, Callable] = {
    "registered": lambda p: None,
    "renamed": lambda p: product_rename(product_id=p, name='Mug "deluxe" <b>'),
    "repriced": lambda p: product_reprice(product_id=p, price=Decimal("7.05")),
    "restocked": lambda p: product_restock(product_id=p, quantity=4),
}


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [1, 500])
@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_an_order_document_is_the_serializer_output(event_store, make_user, case, batch_size):
    customer = make_user("ann")
    mug = register("MUG-1", "Blue mug", price="12.50", category="kitchen")
    pen = register("PEN-1", "Pen", price="1.05")
    if batch_size == 1:  # the order in the table before what happens next
        project(batch_size=batch_size)
    ORDER_CASES[case](customer, mug, pen)
    project(batch_size=batch_size)
    assert OrderHistory.objects.exists()
    assert mismatches(OrderHistory) == []
    assert mismatches(ProductCatalog) == []


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(PRODUCT_CASES))
@pytest.mark.parametrize("category", ["", "kitchen"])
def test_a_product_document_is_the_serializer_output(event_store, customer, case, category):
    mug = register("MUG-1", "Blue mug", price="12.50", stock=5, category=category)
    PRODUCT_CASES[case](mug)
    order = place(customer, (mug, 2))  # stock reserved
    project()
    assert mismatches(ProductCatalog) == []
    order_cancel(order_id=order, user_id=customer.pk, is_staff=False)  # released
    project()
    assert mismatches(ProductCatalog) == []


@pytest.mark.django_db
def test_pages_are_byte_for_byte_the_serializer_path(event_store, customer, client_for):
    mug = register("MUG-1", "Blue mug", price="12.50", category="kitchen")
    for i in range(3):
        ship(place(customer, (mug, i + 1)), "dispatched")
    product_rename(product_id=mug, name="Blue cup")
    project()
    client = client_for(customer)
    page = client.get("/api/queries/orders/", {"page_size": 2})
    rows = list(OrderHistory.objects.order_by("-placed_at", "-order_id")[:2])
    expected = {"next": page.json()["next"], "previous": None,
                "results": OrderOutputSerializer(rows, many=True).data}
    assert page.content == JSONRenderer().render(expected)
    one = client.get(f"/api/queries/orders/{rows[0].order_id}")
    assert one.content == JSONRenderer().render(OrderOutputSerializer(rows[0]).data)
    products = client.get("/api/queries/products/")
    assert products.content == JSONRenderer().render({
        "next": None, "previous": None,
        "results": ProductListApi.OutputSerializer(ProductCatalog.objects.all(), many=True).data,
    })
    browsable = client.get("/api/queries/orders/", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200 and b"Blue cup" in browsable.content


@pytest.mark.django_db
def test_rows_without_a_document_yet_are_served_rendered(event_store, customer, client_for):
    """Pages read rows as plain values (no model instances): a row whose document is
    still NULL (written before documents existed) is rendered from the table, in a
    list page, a search page and a detail alike."""
    mug = register("MUG-1", "Blue mug", price="12.50", category="kitchen")
    pen = register("PEN-1", "Red pen", price="1.50", category="office")
    first = place(customer, (mug, 1))
    place(customer, (pen, 2))
    ship(first, "dispatched")
    project()
    expected_orders = [serialized(row) for row in
                       OrderHistory.objects.order_by("-placed_at", "-order_id")]
    expected_products = [serialized(row) for row in ProductCatalog.objects.order_by("sku")]
    OrderHistory.objects.filter(order_id=first).update(document=None)
    ProductCatalog.objects.filter(product_id=pen).update(document=None)
    client = client_for(customer)

    def results(path, **params):
        response = client.get(path, params)
        assert response.status_code == 200, response.content
        return [JSONRenderer().render(row).decode() for row in response.json()["results"]]

    assert results("/api/queries/orders/") == expected_orders
    assert results("/api/queries/products/") == expected_products
    assert results("/api/queries/products/", q="pen") == expected_products[1:]
    detail = client.get(f"/api/queries/orders/{first}")
    assert detail.content.decode() == serialized(OrderHistory.objects.get(order_id=first))
    assert OrderHistory.objects.filter(document__isnull=True).count() == 1


@pytest.mark.django_db
def test_a_rebuild_writes_the_same_documents(event_store, customer):
    mug = register("MUG-1", "Blue mug", price="12.50")
    ship(place(customer, (mug, 1)), "dispatched")
    product_rename(product_id=mug, name="Blue cup")
    place(customer, (mug, 2))
    forget(customer)
    project(batch_size=2)
    live = {m: dict(m.objects.values_list("pk", "document")) for m in (OrderHistory,
                                                                        ProductCatalog)}
    rebuild(get_projector("order_history"), batch_size=3)
    rebuild(get_projector("product_catalog"), batch_size=3)
    for model, documents in live.items():
        assert dict(model.objects.values_list("pk", "document")) == documents


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_documents_stay_exact_under_racing_renames_forgets_and_placements(
    event_store, make_user, no_projection_trigger
):
    users = [make_user(f"buyer{i}") for i in range(4)]
    products = [register(f"P-{i}", f"Thing {i}", price="3.00", stock=10_000)
                for i in range(4)]
    project()
    stop = threading.Event()
    failures: list[BaseException] = []

    def buyer(i: int) -> None:
        try:
            for step in range(10):
                place(users[i], (products[step % 4], 1), (products[(step + 1 + i % 3) % 4], 1))
                if i == 3 and step == 5:
                    forget(users[i])
                    return
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    def renamer() -> None:
        try:
            for step in range(12):
                product_rename(product_id=products[step % 4], name=f"Thing {step} renamed")
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    def projector() -> None:
        try:
            while not stop.is_set():
                catch_up(get_projector("order_history"), batch_size=4)
                catch_up(get_projector("product_catalog"), batch_size=4)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=buyer, args=(i,)) for i in range(4)]
    writers.append(threading.Thread(target=renamer))
    workers = [threading.Thread(target=projector) for _ in range(2)]
    for thread in writers + workers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in workers:
        thread.join(timeout=60)
    assert failures == []
    project()
    assert OrderHistory.objects.count() >= 30
    assert mismatches(OrderHistory) == []
    assert mismatches(ProductCatalog) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_a_page_is_at_least_as_fresh_as_its_position_while_orders_project(
    event_store, make_user, no_projection_trigger
):
    """The order list reads its position in its page's own statement (no checkpoint
    read first), prepared once the client's connection has run it
    ``PREPARE_THRESHOLD`` times: under orders placed and projected meanwhile, every
    order placed at or before a response's X-Projection-Position is in that response."""
    from django.conf import settings
    from rest_framework.test import APIClient

    customer = make_user("racer")
    mug = register("MUG-1", "Blue mug", price="2.00", stock=10_000)
    project()
    done = threading.Event()
    failures: list[BaseException] = []

    def orders_and_catch_ups() -> None:
        for _ in range(25):
            place(customer, (mug, 1))
            catch_up(get_projector("order_history"), batch_size=2)

    writer = background(orders_and_catch_ups, failures, then=done.set)
    client = APIClient()
    client.force_authenticate(customer)
    seen = []
    try:
        while not done.is_set() or len(seen) < (settings.PREPARE_THRESHOLD or 0) + 3:
            response = client.get("/api/queries/orders/", {"page_size": 100})
            assert response.status_code == 200
            seen.append((int(response["X-Projection-Position"]),
                         {row["order_id"] for row in response.json()["results"]}))
        prepared = prepared_statements("projections_orderhistory")
    finally:
        writer.join(timeout=60)
    connections.close_all()
    assert failures == []
    assert prepared or settings.PREPARE_THRESHOLD is None
    project()
    numbers = dict(OrderHistory.objects.values_list("order_id", "number"))
    assert len(numbers) == 25
    for position, ids in seen:
        due = {str(order) for order, number in numbers.items() if number <= position}
        assert due <= ids, (position, due - ids)


@pytest.mark.django_db(transaction=True)
def test_the_migration_renders_the_documents_of_rows_that_had_none(
    event_store, customer, no_projection_trigger
):
    """Deploying documents to a shop with history: migration 0010 adds the column and
    renders every order's and product's document from the historical models."""
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target):
        executor = MigrationExecutor(connections[READ])  # the read side's database
        executor.loader.build_graph()
        executor.migrate(target)

    mug = register("MUG-1", "Blue mug", price="12.50", category="kitchen")
    ship(place(customer, (mug, 2)), "dispatched")
    project()
    latest = MigrationExecutor(connections[READ]).loader.graph.leaf_nodes("projections")
    migrate([("projections", "0009_product_search")])  # before documents
    migrate(latest)
    assert OrderHistory.objects.filter(document__isnull=False).count() == 1
    assert ProductCatalog.objects.filter(document__isnull=False).count() == 1
    assert mismatches(OrderHistory) == mismatches(ProductCatalog) == []
