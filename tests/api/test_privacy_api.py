"""A customer's rights over HTTP: ``GET /api/auth/me/export/`` (everything the shop
holds about them) and ``POST /api/auth/me/forget/`` (crypto-shredding)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from knox.models import AuthToken
from rest_framework.test import APIClient

from projections.models import Activity, OrderHistory, SalesDaily
from shop.accounts.services import token_issue
from shop.eventstore import events_with_metadata
from tests.api.helpers import assert_error
from tests.givens import project, register, rows
from tests.support.readside import notifications

pytestmark = pytest.mark.django_db

NAME = "zelda-quux"
ADDRESS = "42 Wallaby Way, Sydney"
PASSWORD = "pass-word-123"  # make_user's
EXPORT, FORGET = "/api/auth/me/export/", "/api/auth/me/forget/"


@pytest.fixture
def zelda(make_user):
    return make_user(NAME)


def with_token(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=user).token}")
    return client


@pytest.fixture
def zeldas_orders(event_store, zelda, staff, client_for):
    """Two orders of Zelda's through the API; staff ship the first and dispatch it."""
    mug = register("MUG-1", "Blue mug", price="12.50", stock=50)
    placed = [client_for(zelda).post("/api/commands/orders/", {
        "lines": [{"product_id": str(mug), "quantity": quantity}],
        "shipping_address": ADDRESS}, format="json").json() for quantity in (1, 2)]
    as_staff = client_for(staff)
    shipment = as_staff.post("/api/commands/shipments/", {
        "order_id": placed[0]["order_id"], "carrier": "DHL"}, format="json").json()
    as_staff.post(f"/api/commands/shipments/{shipment['shipment_id']}/status",
                  {"status": "dispatched"}, format="json")
    project()
    return placed, shipment["shipment_id"]


def test_the_export_holds_the_account_every_order_and_their_events(
    zelda, zeldas_orders, make_user, client_for
):
    placed, shipment_id = zeldas_orders
    client_for(make_user("someone-else"))  # another customer's data must not appear

    response = with_token(zelda).get(EXPORT)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"account", "orders"}
    assert body["account"]["username"] == NAME and body["account"]["forgotten"] is False
    orders = {order["order_id"]: order for order in body["orders"]}
    assert set(orders) == {p["order_id"] for p in placed} == {
        str(o) for o in OrderHistory.objects.filter(customer_id=zelda.pk)
        .values_list("order_id", flat=True)}
    first = orders[placed[0]["order_id"]]
    assert (first["customer"], first["shipping_address"], first["total"]) == (
        NAME, ADDRESS, "12.50")
    assert first["lines"][0]["sku"] == "MUG-1"
    assert first["shipment"]["shipment_id"] == shipment_id
    assert first["shipment"]["status"] == "dispatched"
    # Every event of the order and of its shipment, each with who caused it.
    stored = events_with_metadata(first["order_id"]) + events_with_metadata(shipment_id)
    assert [(e["type"], e["version"]) for e in first["events"]] == [
        (type(event).__qualname__, event.originator_version) for event, _ in stored]
    assert first["events"][0]["actor"] == {"kind": "customer", "name": "you"}
    assert first["events"][0]["via"] == "api"
    assert {e["actor"]["name"] for e in first["events"][1:]} == {"the shop"}
    assert b"someone-else" not in response.content
    assert b'"username":"staff"' not in response.content.replace(b" ", b"")


def test_forgetting_needs_the_password_and_changes_nothing_without_it(zelda, zeldas_orders):
    before = len(notifications())

    response = with_token(zelda).post(FORGET, {"password": "not-it"}, format="json")

    assert_error(response, 403, "invalid_credentials")
    assert len(notifications()) == before
    zelda.refresh_from_db()
    assert zelda.username == NAME and zelda.check_password(PASSWORD)
    assert AuthToken.objects.filter(user=zelda).exists()


def test_staff_cannot_forget_themselves(staff, event_store):
    response = with_token(staff).post(FORGET, {"password": PASSWORD}, format="json")

    assert_error(response, 409, "invalid_state")
    staff.refresh_from_db()
    assert staff.username == "staff" and staff.has_usable_password()


def test_a_missing_password_is_400(zelda, event_store):
    assert_error(with_token(zelda).post(FORGET, {}, format="json"), 400, "invalid",
                 {"password"})


def test_forget_me_ends_the_account_and_the_read_models_forget_the_name(
    zelda, zeldas_orders, client_for, staff
):
    placed, _shipment = zeldas_orders
    client = with_token(zelda)
    sales_before = rows(SalesDaily)
    totals_before = dict(OrderHistory.objects.values_list("order_id", "total"))

    response = client.post(FORGET, {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert_error(client.get(EXPORT), 401, "not_authenticated")  # every token ended
    zelda = User.objects.get(pk=zelda.pk)
    assert zelda.username == f"forgotten-{zelda.pk}" and not zelda.has_usable_password()
    project()
    orders = OrderHistory.objects.filter(customer_id=zelda.pk)
    assert {(o.customer, o.shipping_address) for o in orders} == {("forgotten customer", None)}
    assert dict(OrderHistory.objects.values_list("order_id", "total")) == totals_before
    assert rows(SalesDaily) == sales_before
    # Her acts stay in the activity log, without her name.
    placed_rows = Activity.objects.filter(type="Order.Placed")
    assert {row.actor_username for row in placed_rows} == {None}
    summaries = [e["summary"] for e in client_for(staff).get(
        "/api/queries/activity/", {"type": "Order.Placed"}).json()["results"]]
    assert summaries == [f"a forgotten customer placed order {p['number']} for {total} (API)"
                         for p, total in zip(reversed(placed), ("25.00", "12.50"), strict=True)]
    forgotten = client_for(staff).get("/api/queries/activity/",
                                      {"type": "Customer.Forgotten"}).json()["results"]
    assert [e["summary"] for e in forgotten] == [
        f"a forgotten customer forgot the customer of account {zelda.pk} (API)"]
    # Staff reading her order's timeline: the events load, the personal fields are null.
    events = client_for(staff).get(
        f"/api/queries/orders/{placed[0]['order_id']}/events").json()["results"]
    assert events[0]["data"]["customer"] is None
    assert events[0]["data"]["shipping_address"] is None
    assert events[0]["actor"]["username"] is None


def test_a_forgotten_customers_orders_read_as_the_schema_says(zelda, zeldas_orders, staff,
                                                              client_for):
    """Staff read the forgotten customer's orders: the live schema validation (this
    suite's autouse fixture) checks the null address is declared."""
    with_token(zelda).post(FORGET, {"password": PASSWORD}, format="json")
    project()

    response = client_for(staff).get("/api/queries/orders/")

    assert response.status_code == 200
    assert {(o["customer"], o["shipping_address"]) for o in response.json()["results"]} == {
        ("forgotten customer", None)}
