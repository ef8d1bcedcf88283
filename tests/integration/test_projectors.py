"""Projectors: what each event does to each read model, and that re-applying is a no-op."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test.utils import CaptureQueriesContext

from catalog.services import product_rename, product_reprice, product_restock
from orders.services import order_cancel
from projections.models import OrderHistory, OrderHistoryProduct, ProductCatalog
from projections.registry import PROJECTORS, get_projector
from projections.runner import projection_position
from shipping.services import shipment_change_status, shipment_create
from shop.databases import read_connection
from shop.eventstore import get_app, head_position
from tests.givens import place, project, register, rows

pytestmark = pytest.mark.django_db


def order_version(order_id) -> int:
    return get_app().repository.get(order_id).version


def logged_events(projector):
    """Every event in the log that the projector handles, in log order, with its id."""
    app = get_app()
    notifications = app.recorder.select_notifications(
        start=1, limit=10_000, topics=projector.topics()
    )
    return [(n.id, app.mapper.to_domain_event(n)) for n in notifications]


# --- product catalog -----------------------------------------------------------------


def test_registered_product_is_in_the_catalog(event_store):
    product_id = register("MUG-1", "Blue mug", price="19.99", stock=7)

    project("product_catalog")

    row = ProductCatalog.objects.get()
    assert (row.product_id, row.sku, row.name) == (product_id, "MUG-1", "Blue mug")
    assert (row.price, row.stock, row.reserved, row.stock_available) == (
        Decimal("19.99"), 7, 0, 7
    )
    assert row.version == 1


def test_rename_reprice_restock_change_the_catalog_row(event_store):
    product_id = register("MUG-1", "Blue mug", price="19.99", stock=7)
    product_rename(product_id=product_id, name="Red mug")
    product_reprice(product_id=product_id, price=Decimal("24.50"))
    product_restock(product_id=product_id, quantity=3)

    project("product_catalog")

    row = ProductCatalog.objects.get()
    assert (row.name, row.price, row.stock, row.stock_available, row.version) == (
        "Red mug", Decimal("24.50"), 10, 10, 4
    )


def test_reservations_and_releases_change_stock_available(event_store, customer):
    mug = register("MUG-1", stock=10)
    order_id = place(customer, (mug, 3))
    place(customer, (mug, 2))
    project("product_catalog")
    row = ProductCatalog.objects.get()
    assert (row.stock, row.reserved, row.stock_available) == (10, 5, 5)

    order_cancel(order_id=order_id, user_id=customer.pk, is_staff=False)
    project("product_catalog")

    row.refresh_from_db()
    assert (row.stock, row.reserved, row.stock_available) == (10, 2, 8)
    assert row.version == get_app().repository.get(mug).version


# --- order history: orders ------------------------------------------------------------


def test_placed_order_is_one_row_with_named_priced_lines(event_store, customer):
    mug = register("MUG-1", "Blue mug", price="19.99")
    pen = register("PEN-1", "Black pen", price="1.50")
    order_id = place(customer, (mug, 3), (pen, 2), address="221B Baker St")

    project("order_history")

    row = OrderHistory.objects.get()
    placed = next(iter(get_app().events.get(order_id)))
    assert row.order_id == order_id
    assert (row.customer_id, row.customer, row.status) == (customer.pk, "john", "placed")
    assert row.total == Decimal("62.97")
    assert row.shipping_address == "221B Baker St"
    assert row.placed_at == placed.timestamp
    assert row.version == 1 == order_version(order_id)
    assert row.lines == [
        {"product_id": str(mug), "sku": "MUG-1", "product_name": "Blue mug",
         "quantity": 3, "unit_price": "19.99", "line_total": "59.97"},
        {"product_id": str(pen), "sku": "PEN-1", "product_name": "Black pen",
         "quantity": 2, "unit_price": "1.50", "line_total": "3.00"},
    ]
    assert (row.shipment_id, row.carrier, row.shipment_status, row.shipment_updated_at) == (
        None, None, None, None
    )


def test_cancelled_order(event_store, customer):
    order_id = place(customer, (register("MUG-1"), 1))
    order_cancel(order_id=order_id, user_id=customer.pk, is_staff=False, reason="changed mind")

    project("order_history")

    row = OrderHistory.objects.get()
    assert (row.status, row.version) == ("cancelled", 2)
    assert row.version == order_version(order_id)


def test_shipment_created_and_order_shipped(event_store, customer):
    order_id = place(customer, (register("MUG-1"), 1))
    shipment = shipment_create(order_id=order_id, carrier="DHL")

    project("order_history")

    row = OrderHistory.objects.get()
    created = next(iter(get_app().events.get(shipment.aggregate_id)))
    assert (row.status, row.version) == ("shipped", order_version(order_id))
    assert row.shipment_id == shipment.aggregate_id
    assert (row.carrier, row.shipment_status) == ("DHL", "created")
    assert row.shipment_updated_at == created.timestamp


@pytest.mark.parametrize(
    ("statuses", "shipment_status", "order_status"),
    [
        (["dispatched"], "dispatched", "shipped"),
        (["dispatched", "in_transit"], "in_transit", "shipped"),
        (["dispatched", "in_transit", "delivered"], "delivered", "delivered"),
        (["delivered"], "delivered", "delivered"),
    ],
)
def test_shipment_status_changes(event_store, customer, statuses, shipment_status, order_status):
    order_id = place(customer, (register("MUG-1"), 1))
    shipment_id = shipment_create(order_id=order_id, carrier="UPS").aggregate_id
    project("order_history")  # the later events find the order by its shipment id
    for status in statuses:
        shipment_change_status(shipment_id=shipment_id, status=status)

    project("order_history")

    row = OrderHistory.objects.get()
    last = list(get_app().events.get(shipment_id))[-1]
    assert (row.shipment_status, row.status) == (shipment_status, order_status)
    assert row.shipment_updated_at == last.timestamp
    assert row.version == order_version(order_id)


def test_a_whole_lifecycle_in_one_batch(event_store, customer):
    order_id = place(customer, (register("MUG-1"), 1))
    shipment_id = shipment_create(order_id=order_id, carrier="UPS").aggregate_id
    shipment_change_status(shipment_id=shipment_id, status="in_transit")
    shipment_change_status(shipment_id=shipment_id, status="delivered")

    project("order_history")

    row = OrderHistory.objects.get()
    assert (row.status, row.shipment_status, row.version) == ("delivered", "delivered", 3)


# --- order history: renames -------------------------------------------------------------


def test_rename_updates_every_past_order_with_one_update(event_store, customer, other_customer):
    mug = register("MUG-1", "Blue mug")
    pen = register("PEN-1", "Black pen")
    for user in (customer, other_customer) * 3:
        place(user, (pen, 1), (mug, 2))  # the mug is the second line
    untouched = place(customer, (pen, 1))
    project("order_history")
    product_rename(product_id=mug, name="Azure mug")

    with CaptureQueriesContext(read_connection) as queries:
        project("order_history")

    table = read_connection.ops.quote_name(OrderHistory._meta.db_table)
    writes = [
        q["sql"] for q in queries.captured_queries
        if table in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT")
    ]
    # One UPDATE of the lines, then one of the documents it made stale (a bulk UPDATE
    # per 500 orders, projections.documents.rerender): never one per order.
    assert len(writes) == 2 and all(w.lstrip().upper().startswith("UPDATE") for w in writes)
    assert "lines" in writes[0] and '"document"' in writes[1]
    for row in OrderHistory.objects.exclude(order_id=untouched):
        assert [line["product_name"] for line in row.lines] == ["Black pen", "Azure mug"]
        assert row.lines[1]["sku"] == "MUG-1"
    assert OrderHistory.objects.get(order_id=untouched).lines[0]["product_name"] == "Black pen"
    assert OrderHistoryProduct.objects.get(pk=mug).name == "Azure mug"


def test_renames_in_the_same_batch_as_the_orders(event_store, customer):
    mug = register("MUG-1", "Blue mug")
    first = place(customer, (mug, 1))
    product_rename(product_id=mug, name="Green mug")
    second = place(customer, (mug, 1))
    product_rename(product_id=mug, name="Azure mug")
    third = place(customer, (mug, 1))

    project("order_history")

    names = {
        row.order_id: row.lines[0]["product_name"] for row in OrderHistory.objects.all()
    }
    assert names == {first: "Azure mug", second: "Azure mug", third: "Azure mug"}


def test_rename_of_a_product_in_no_order_touches_no_order(event_store, customer):
    place(customer, (register("PEN-1", "Black pen"), 1))
    mug = register("MUG-1", "Blue mug")
    project("order_history")
    before = rows(OrderHistory)

    product_rename(product_id=mug, name="Azure mug")
    project("order_history")

    assert rows(OrderHistory) == before


# --- idempotency ----------------------------------------------------------------------


def make_history(customer, other_customer):
    mug = register("MUG-1", "Blue mug", stock=50)
    pen = register("PEN-1", "Black pen", price="2.00", stock=50)
    product_restock(product_id=pen, quantity=5)
    first = place(customer, (mug, 2), (pen, 1))
    second = place(other_customer, (pen, 3))
    third = place(customer, (mug, 1))
    product_rename(product_id=mug, name="Azure mug")
    product_reprice(product_id=mug, price=Decimal("21.00"))
    order_cancel(order_id=second, user_id=other_customer.pk, is_staff=False)
    shipment_id = shipment_create(order_id=first, carrier="DHL").aggregate_id
    shipment_change_status(shipment_id=shipment_id, status="dispatched")
    shipment_change_status(shipment_id=shipment_id, status="delivered")
    shipment_create(order_id=third, carrier="UPS")


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_reapplying_the_events_changes_nothing(event_store, customer, other_customer, name):
    make_history(customer, other_customer)
    project(name)
    projector = get_projector(name)
    before = [rows(model) for model in projector.models]
    events = logged_events(projector)

    projector.apply(events)  # the whole log again, in one batch
    for start in range(0, len(events), 3):  # and again in small batches
        projector.apply(events[start:start + 3])
    projector.apply(events[len(events) // 2:])

    assert [rows(model) for model in projector.models] == before


def test_catch_up_advances_every_projection_to_the_head(event_store, customer, other_customer):
    make_history(customer, other_customer)

    project()

    for name in PROJECTORS:
        assert projection_position(name) == head_position()


@pytest.mark.django_db
def test_rows_made_without_model_init_are_the_rows_the_orm_makes(event_store, customer):
    """``new_row`` and ``fetch`` skip ``Model.__init__`` for plain models: the rows have
    the same attributes and state as ``Model(**values)`` and ``from_db`` give, and a
    model with a foreign key (set through a descriptor) keeps the ORM's way."""
    from django.contrib.admin.models import LogEntry

    from projections.projectors import _plain_rows, fetch, new_row

    values = {"product_id": "00000000-0000-0000-0000-000000000001", "sku": "MUG-1",
              "name": "Mug", "version": 1}
    made, orm = new_row(OrderHistoryProduct, **values), OrderHistoryProduct(**values)
    assert {k: v for k, v in vars(made).items() if k != "_state"} == {
        k: v for k, v in vars(orm).items() if k != "_state"}
    assert (made._state.adding, made._state.db) == (True, None)
    with pytest.raises(TypeError):
        new_row(OrderHistoryProduct, colour="blue", **values)
    assert not _plain_rows(LogEntry) and _plain_rows(OrderHistory)

    mug = register("MUG-1", "Blue mug", price="12.50")
    place(customer, (mug, 2))
    project()
    order = OrderHistory.objects.get()
    [fetched] = fetch(OrderHistory, order_id=[order.order_id])
    assert {k: v for k, v in vars(fetched).items() if k != "_state"} == {
        k: v for k, v in vars(order).items() if k != "_state"}
    assert (fetched._state.adding, fetched._state.db) == (False, read_connection.alias)
