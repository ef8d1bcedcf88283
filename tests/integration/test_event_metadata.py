"""Every event carries who did it, how and why (``shop.metadata``), stored with it by
the event store's mapper and read back beside it: for each way in (the API, the back
office, a management command, a task sent by beat), the causation chain of a
command's consequences, and rows stored before metadata existed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from uuid import UUID

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from shop.eventstore import get_app
from shop.metadata import LEGACY, Actor, Context, Metadata
from tests.givens import register
from tests.support.readside import notifications

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_projection_trigger")]

FIXTURE = Path(__file__).parent.parent / "fixtures" / "events_v2.json"


def log() -> list[tuple[str, object, Metadata]]:
    """Every event of the log: its type, the event, its metadata."""
    mapper = get_app().mapper
    decoded = [mapper.decode(n) for n in notifications()]
    return [(".".join(type(e).__qualname__.split(".")[-2:]), e, m) for e, m in decoded]


def of_type(name: str) -> list[tuple[object, Metadata]]:
    return [(event, meta) for kind, event, meta in log() if kind == name]


def test_a_command_over_the_api_records_the_customer_the_request_and_the_causes(
    event_store, customer, client_for
):
    mug = register()
    response = client_for(customer).post(
        "/api/commands/orders/", {"lines": [{"product_id": str(mug), "quantity": 2}],
                                  "shipping_address": "1 Main St"},
        format="json", HTTP_X_REQUEST_ID="req-from-the-client-1")
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "req-from-the-client-1"
    [(placed, placed_meta)] = of_type("Order.Placed")
    [(_reserved, reserved_meta)] = of_type("Product.StockReserved")
    john = Actor("customer", customer.pk, "john")
    assert placed_meta == Metadata(john, "api", "req-from-the-client-1",
                                   "req-from-the-client-1")
    # The reservation is the order's consequence: caused by its Placed.
    assert reserved_meta == Metadata(john, "api", "req-from-the-client-1",
                                     f"{placed.originator_id}:1")


@pytest.mark.parametrize("given", ["", "x" * 129, "caf\u00e9", "tab\there"])
def test_an_unusable_request_id_is_replaced_by_a_new_one(client, given):
    response = client.get("/api/health/", HTTP_X_REQUEST_ID=given)
    assert response["X-Request-ID"] != given
    assert UUID(response["X-Request-ID"])


def test_every_answer_carries_its_request_id_errors_included(client):
    response = client.get("/api/queries/orders/", HTTP_X_REQUEST_ID="r-401")
    assert response.status_code == 401
    assert response["X-Request-ID"] == "r-401"


def test_staff_commands_over_the_api_record_the_staff_member(event_store, staff, client_for):
    mug = register()
    response = client_for(staff).post(f"/api/commands/products/{mug}/reprice",
                                      {"price": "3.00"}, format="json")
    assert response.status_code == 200, response.content
    [(_event, meta)] = of_type("Product.Repriced")
    assert (meta.actor, meta.via) == (Actor("staff", staff.pk, "staff"), "api")
    assert meta.request_id == meta.causation_id == response["X-Request-ID"]


def test_a_delivery_causes_the_orders_delivery(event_store, staff, customer, client_for):
    client = client_for(staff)
    mug = register()
    order = client_for(customer).post(
        "/api/commands/orders/", {"lines": [{"product_id": str(mug), "quantity": 1}],
                                  "shipping_address": "1 Main St"}, format="json").json()
    shipment = client.post("/api/commands/shipments/", {"order_id": order["order_id"],
                                                        "carrier": "DHL"},
                           format="json").json()["shipment_id"]
    for status in ("dispatched", "in_transit", "delivered"):
        client.post(f"/api/commands/shipments/{shipment}/status", {"status": status},
                    format="json", HTTP_X_REQUEST_ID=f"r-{status}")
    [(delivered, delivered_meta)] = of_type("Shipment.Delivered")
    [(_order_delivered, order_meta)] = of_type("Order.Delivered")
    assert delivered_meta.causation_id == "r-delivered"
    assert order_meta.causation_id == f"{delivered.originator_id}:{delivered.originator_version}"
    assert order_meta.request_id == "r-delivered"
    [(_shipped, shipped_meta)] = of_type("Order.Shipped")  # caused by the shipment's creation
    assert shipped_meta.causation_id == f"{shipment}:1"


def test_the_back_office_records_the_staff_member_via_the_admin(event_store, staff, client):
    mug = register()
    client.force_login(staff)
    response = client.post(reverse("admin:projections_productcatalog_reprice", args=[mug]),
                           {"price": "4.50", "shown_version": 1}, HTTP_X_REQUEST_ID="r-adm")
    assert response.status_code == 302, response.content[:500]
    [(_event, meta)] = of_type("Product.Repriced")
    assert meta == Metadata(Actor("staff", staff.pk, "staff"), "admin", "r-adm", "r-adm")


@pytest.mark.django_db(transaction=True)
def test_a_management_command_records_its_way_in(event_store, settings):
    settings.DEBUG = True
    call_command("seed_demo", verbosity=0)
    placed = of_type("Order.Placed")
    assert placed and {meta.via for _event, meta in placed} == {"command"}
    assert {meta.actor.kind for _event, meta in placed} == {"customer"}
    assert {meta.actor.username for event, meta in placed} == {
        event.customer for event, _meta in placed}
    assert {meta.actor.kind for _event, meta in of_type("Product.Registered")} == {"staff"}


def test_a_task_sent_by_beat_records_its_way_in(event_store, settings):
    from celery import shared_task

    from catalog.services import product_restock
    from shop.unit_of_work import UnitOfWork

    @shared_task(bind=True, name="tests.restock_on_schedule")
    def restock_on_schedule(self, product_id: str) -> None:
        product_restock(uow=UnitOfWork(context=Context.for_task(self.request)),
                        product_id=UUID(product_id), quantity=1)

    mug = register()
    restock_on_schedule.apply(args=[str(mug)],
                              headers={**settings.BEAT_HEADERS, "request_id": "beat-1"})
    [(_event, meta)] = of_type("Product.Restocked")
    assert meta == Metadata(Actor(), "beat", "beat-1", "beat-1")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fixture's rows are PG's")
def test_rows_stored_before_metadata_read_as_the_systems_by_an_unknown_way_in(event_store):
    rows = json.loads(FIXTURE.read_text())
    with event_store.recorder.datastore.transaction(commit=True) as cursor:
        for row in rows["shop_events"]:
            cursor.execute(
                "INSERT INTO shop_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)",
                [row["originator_id"], row["originator_version"], row["topic"],
                 base64.b64decode(row["state"])])
    decoded = log()
    assert len(decoded) == len(rows["shop_events"])
    assert {meta for _kind, _event, meta in decoded} == {LEGACY}
    assert (LEGACY.actor, LEGACY.via, LEGACY.request_id) == (Actor("system"), "unknown", None)
    placed = [event for kind, event, _meta in decoded if kind == "Order.Placed"]
    # Written before personal fields were sealed: read as they were stored.
    assert {(event.customer, event.shipping_address) for event in placed} == {
        ("john", "1 Main St")}
