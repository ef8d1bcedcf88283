"""Who did what over HTTP: the activity log (staff), and an order's timeline with its
metadata as staff and as its customer see it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from projections.models import Activity
from tests.api.helpers import assert_error
from tests.givens import project, register

pytestmark = pytest.mark.django_db

ACTIVITY = "/api/queries/activity/"


@pytest.fixture
def history(event_store, client_for, staff, customer):
    """Staff register and reprice a mug and cancel the customer's second order; the
    customer places two orders; each request with its own X-Request-ID."""
    as_staff, as_customer = client_for(staff), client_for(customer)

    def post(client, url, body, request_id):
        response = client.post(url, body, format="json", HTTP_X_REQUEST_ID=request_id)
        assert response.status_code in (200, 201), response.content
        return response.json()

    mug = post(as_staff, "/api/commands/products/",
               {"sku": "MUG-1", "name": "Blue mug", "price": "19.99", "stock": 10},
               "req-register")["product_id"]
    post(as_staff, f"/api/commands/products/{mug}/reprice", {"price": "21.00"}, "req-reprice")
    first = post(as_customer, "/api/commands/orders/",
                 {"lines": [{"product_id": mug, "quantity": 1}],
                  "shipping_address": "1 Main St"}, "req-place-1")
    second = post(as_customer, "/api/commands/orders/",
                  {"lines": [{"product_id": mug, "quantity": 2}],
                   "shipping_address": "1 Main St"}, "req-place-2")
    post(as_staff, f"/api/commands/orders/{second['order_id']}/cancel",
         {"reason": "out of stock"}, "req-cancel")
    project()
    return {"mug": mug, "first": first, "second": second}


def summaries(body):
    return [entry["summary"] for entry in body["results"]]


def test_staff_read_who_did_what_newest_first_as_sentences(client_for, staff, history):
    response = client_for(staff).get(ACTIVITY)

    assert response.status_code == 200
    body = response.json()
    first, second = history["first"]["number"], history["second"]["number"]
    assert summaries(body) == [
        f"staff cancelled order {second}: out of stock (API)",
        f"john placed order {second} for 42.00 (API)",
        f"john placed order {first} for 21.00 (API)",
        "staff repriced MUG-1 from 19.99 to 21.00 (API)",
        "staff registered MUG-1 “Blue mug” at 19.99 (API)",
    ]
    cancel = body["results"][0]
    assert cancel["actor"] == {"kind": "staff", "user_id": staff.pk, "username": "staff"}
    assert (cancel["via"], cancel["request_id"], cancel["type"]) == (
        "api", "req-cancel", "Order.Cancelled")
    assert (cancel["aggregate_type"], cancel["aggregate_id"], cancel["subject"]) == (
        "order", history["second"]["order_id"], str(second))
    # The reservations and releases the orders caused are not acts of their own.
    assert not Activity.objects.filter(type__startswith="Product.Stock").exists()


def test_the_activity_filters(client_for, staff, customer, history):
    as_staff = client_for(staff)
    second = history["second"]["number"]

    def types(**params):
        response = as_staff.get(ACTIVITY, params)
        assert response.status_code == 200, response.content
        return [entry["type"] for entry in response.json()["results"]]

    assert types(actor="john") == ["Order.Placed", "Order.Placed"]
    assert types(actor="system") == []
    assert types(aggregate="MUG-1") == ["Product.Repriced", "Product.Registered"]
    assert types(aggregate=history["mug"]) == ["Product.Repriced", "Product.Registered"]
    assert types(aggregate=str(second)) == ["Order.Cancelled", "Order.Placed"]
    assert types(type="Order.Placed", actor="john", aggregate=str(second)) == ["Order.Placed"]
    now = timezone.now()
    assert len(types(**{"from": (now - timedelta(hours=1)).isoformat()})) == 5
    assert types(**{"to": (now - timedelta(hours=1)).isoformat()}) == []


def test_the_activity_pages_by_cursor(client_for, staff, history):
    as_staff = client_for(staff)
    seen, url, params = [], ACTIVITY, {"page_size": 2}
    while url:
        response = as_staff.get(url, params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [entry["position"] for entry in body["results"]]
        url, params = body["next"], None
    assert seen == sorted(Activity.objects.values_list("position", flat=True), reverse=True)
    assert len(seen) == 5


def test_the_activity_is_for_staff_only(client_for, customer, history):
    assert_error(client_for(customer).get(ACTIVITY), 403, "permission_denied")
    assert_error(client_for().get(ACTIVITY), 401, "not_authenticated")


@pytest.mark.parametrize("params, field", [
    ({"type": "Order.Exploded"}, "type"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from"),
    ({"actor": "x" * 151}, "actor"),
    ({"aggregate": "MUG\x00"}, "aggregate"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
def test_bad_activity_filters_are_400_naming_the_field(client_for, staff, event_store,
                                                       params, field):
    assert_error(client_for(staff).get(ACTIVITY, params), 400, "invalid", {field})


def test_staff_see_each_events_metadata_on_the_timeline(client_for, staff, history):
    order_id = history["second"]["order_id"]

    events = client_for(staff).get(f"/api/queries/orders/{order_id}/events").json()["results"]

    placed, cancelled = events
    assert placed["actor"] == {"kind": "customer", "user_id": placed["data"]["customer_id"],
                               "username": "john"}
    assert (placed["via"], placed["request_id"], placed["causation_id"]) == (
        "api", "req-place-2", "req-place-2")
    assert cancelled["actor"]["username"] == "staff"
    assert (cancelled["via"], cancelled["request_id"]) == ("api", "req-cancel")


def test_a_customer_sees_you_and_the_shop_never_a_staff_name(client_for, customer, history):
    order_id = history["second"]["order_id"]

    response = client_for(customer).get(f"/api/queries/orders/{order_id}/events")

    placed, cancelled = response.json()["results"]
    assert placed["actor"] == {"kind": "customer", "name": "you"}
    assert cancelled["actor"] == {"kind": "staff", "name": "the shop"}
    assert "customer_id" not in placed["data"]
    for event in (placed, cancelled):  # no staff name, no ids, no way in
        assert set(event) == {"type", "version", "timestamp", "data", "actor"}


def test_the_shops_own_acts_read_as_the_shop(client_for, staff, event_store):
    register("PEN-1")  # a service called with no request: the system, by an unknown way
    project("activity")

    entry, = client_for(staff).get(ACTIVITY).json()["results"]

    assert entry["actor"] == {"kind": "system", "user_id": None, "username": None}
    assert entry["summary"] == "the shop registered PEN-1 “PEN-1” at 10.00"
