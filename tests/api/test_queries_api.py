"""The query API over HTTP: shapes, pagination, permissions, freshness."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from django.utils import timezone

from catalog.services import product_rename
from orders.services import order_cancel
from projections.models import Checkpoint
from projections.runner import projection_position
from shipping.services import shipment_change_status, shipment_create
from shop.eventstore import head_position
from tests.givens import place, project, register

pytestmark = pytest.mark.django_db

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
POSITION = "X-Projection-Position"


@pytest.fixture
def mug(event_store):
    return register("MUG-1", "Blue mug", price="19.99", stock=500)


@pytest.fixture
def pen(event_store):
    return register("PEN-1", "Black pen", price="1.50", stock=500)


def get(client, url, **params):
    response = client.get(url, params)
    assert POSITION in response, f"{url} answered {response.status_code} without {POSITION}"
    return response


# --- products -------------------------------------------------------------------------


def test_products_are_public_sorted_by_sku_and_searchable(client_for, mug, pen, customer):
    place(customer, (mug, 3))
    project()
    anonymous = client_for()

    response = get(anonymous, "/api/queries/products/")

    assert response.status_code == 200
    assert response[POSITION] == str(projection_position("product_catalog")) == str(
        head_position()
    )
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert body["results"] == [
        {"product_id": str(mug), "sku": "MUG-1", "name": "Blue mug", "category": "",
         "price": "19.99", "stock_available": 497, "version": 2},
        {"product_id": str(pen), "sku": "PEN-1", "name": "Black pen", "category": "",
         "price": "1.50", "stock_available": 500, "version": 1},
    ]
    by_sku = get(anonymous, "/api/queries/products/", search="pen-").json()["results"]
    by_name = get(anonymous, "/api/queries/products/", search="BLUE").json()["results"]
    assert [p["sku"] for p in by_sku] == ["PEN-1"]
    assert [p["sku"] for p in by_name] == ["MUG-1"]
    assert get(anonymous, "/api/queries/products/", search="nothing").json()["results"] == []


# --- orders ---------------------------------------------------------------------------


def test_an_order_has_the_documented_shape(client_for, customer, mug, pen):
    order_id = place(customer, (mug, 3), (pen, 2), address="221B Baker St")
    project()

    response = get(client_for(customer), "/api/queries/orders/")

    assert response.status_code == 200
    [order] = response.json()["results"]
    assert set(order) == {"order_id", "number", "customer", "status", "placed_at", "total",
                          "shipping_address", "version", "lines", "shipment"}
    assert order["order_id"] == str(order_id)
    # the number is the log position of the order's placement: 2 products, then it
    assert order["number"] == 3
    assert (order["customer"], order["status"], order["total"], order["version"]) == (
        "john", "placed", "62.97", 1
    )
    assert order["shipping_address"] == "221B Baker St"
    assert ISO_UTC.match(order["placed_at"])
    assert order["lines"] == [
        {"product_id": str(mug), "sku": "MUG-1", "product_name": "Blue mug",
         "quantity": 3, "unit_price": "19.99", "line_total": "59.97"},
        {"product_id": str(pen), "sku": "PEN-1", "product_name": "Black pen",
         "quantity": 2, "unit_price": "1.50", "line_total": "3.00"},
    ]
    assert order["shipment"] is None


def test_an_order_shows_its_shipment_and_the_current_product_name(
    client_for, customer, staff, mug
):
    order_id = place(customer, (mug, 1))
    shipment_id = shipment_create(order_id=order_id, carrier="DHL").aggregate_id
    shipment_change_status(shipment_id=shipment_id, status="dispatched")
    product_rename(product_id=mug, name="Azure mug")
    project()

    order = get(client_for(customer), f"/api/queries/orders/{order_id}").json()

    assert (order["status"], order["version"]) == ("shipped", 2)
    assert order["lines"][0]["product_name"] == "Azure mug"
    assert order["lines"][0]["unit_price"] == "19.99"
    shipment = order["shipment"]
    assert set(shipment) == {"shipment_id", "carrier", "status", "updated_at"}
    assert (shipment["shipment_id"], shipment["carrier"], shipment["status"]) == (
        str(shipment_id), "DHL", "dispatched"
    )
    assert ISO_UTC.match(shipment["updated_at"])


def test_order_numbers_increase_with_placement_and_staff_search_by_number(
    client_for, customer, other_customer, staff, mug
):
    first = place(customer, (mug, 1))
    second = place(other_customer, (mug, 2))
    project()
    staff_client = client_for(staff)

    numbers = {o["order_id"]: o["number"]
               for o in get(staff_client, "/api/queries/orders/").json()["results"]}
    assert numbers[str(first)] < numbers[str(second)]
    detail = get(staff_client, f"/api/queries/orders/{second}").json()
    assert detail["number"] == numbers[str(second)]

    found = get(staff_client, "/api/queries/orders/", number=numbers[str(second)]).json()
    assert [o["order_id"] for o in found["results"]] == [str(second)]
    assert get(staff_client, "/api/queries/orders/", number=999999).json()["results"] == []
    # a customer finds only their own order by its number
    johns = get(client_for(customer), "/api/queries/orders/", number=numbers[str(second)])
    assert johns.json()["results"] == []


@pytest.mark.parametrize("number", ["abc", "0", "-3", "1.5", "99999999999999999999999"])
def test_an_invalid_order_number_is_400_invalid(client_for, staff, number, event_store):
    response = get(client_for(staff), "/api/queries/orders/", number=number)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and set(body["errors"]) == {"number"}


def test_customers_see_their_own_orders_newest_first(
    client_for, customer, other_customer, staff, mug
):
    johns = [place(customer, (mug, 1)) for _ in range(3)]
    janes = [place(other_customer, (mug, 1)) for _ in range(2)]
    project()

    def ids(user, **params):
        return [o["order_id"] for o in
                get(client_for(user), "/api/queries/orders/", **params).json()["results"]]

    assert ids(customer) == [str(i) for i in reversed(johns)]
    assert ids(other_customer) == [str(i) for i in reversed(janes)]
    assert ids(staff) == [str(i) for i in reversed(johns + janes)]
    assert ids(staff, customer="jane") == [str(i) for i in reversed(janes)]
    assert ids(staff, customer="nobody") == []
    # the filter is staff-only: a customer still sees only their own orders
    assert ids(customer, customer="jane") == [str(i) for i in reversed(johns)]


def test_order_history_is_paginated_by_cursor(client_for, customer, mug):
    placed = [place(customer, (mug, 1)) for _ in range(23)]
    project()
    client = client_for(customer)

    first = get(client, "/api/queries/orders/").json()
    assert len(first["results"]) == 20
    assert first["previous"] is None and first["next"]
    second = get(client, first["next"]).json()
    assert len(second["results"]) == 3
    assert second["next"] is None and second["previous"]

    seen = [o["order_id"] for o in first["results"] + second["results"]]
    assert seen == [str(i) for i in reversed(placed)]

    whole = get(client, "/api/queries/orders/", page_size=100).json()
    assert [o["order_id"] for o in whole["results"]] == seen and whole["next"] is None
    capped = get(client, "/api/queries/orders/", page_size=5).json()
    assert len(capped["results"]) == 5 and capped["next"]


def test_order_detail_is_for_its_owner_and_staff(
    client_for, customer, other_customer, staff, mug
):
    order_id = place(customer, (mug, 1))
    project()
    url = f"/api/queries/orders/{order_id}"

    assert get(client_for(customer), url).json()["order_id"] == str(order_id)
    assert get(client_for(staff), url).json()["order_id"] == str(order_id)
    response = get(client_for(other_customer), url)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    unknown = get(client_for(staff), f"/api/queries/orders/{uuid4()}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_anonymous_callers_get_401_on_orders(client_for, event_store):
    for url in ("/api/queries/orders/", f"/api/queries/orders/{uuid4()}",
                f"/api/queries/orders/{uuid4()}/events", "/api/queries/projections/"):
        response = get(client_for(), url)
        assert response.status_code == 401, url
        assert response.json()["code"] == "not_authenticated"


# --- an order's events ------------------------------------------------------------------


def test_order_events_oldest_first_even_before_projection(
    client_for, customer, other_customer, staff, mug
):
    order_id = place(customer, (mug, 2), address="1 Main St")
    shipment_id = shipment_create(order_id=order_id, carrier="UPS").aggregate_id
    shipment_change_status(shipment_id=shipment_id, status="delivered")
    url = f"/api/queries/orders/{order_id}/events"  # nothing projected yet

    response = get(client_for(customer), url)

    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    events = body["results"]
    assert [(e["type"], e["version"]) for e in events] == [
        ("Order.Placed", 1), ("Order.Shipped", 2), ("Order.Delivered", 3)
    ]
    for event in events:
        # The shop's own acts (services called here without a request) read so.
        assert set(event) == {"type", "version", "timestamp", "data", "actor"}
        assert event["actor"] == {"kind": "system", "name": "the shop"}
        assert ISO_UTC.match(event["timestamp"])
    assert events[0]["data"] == {  # a customer's own timeline names no customer_id
        "customer": "john",
        "lines": [{"product_id": str(mug), "sku": "MUG-1", "quantity": 2,
                   "unit_price": "19.99"}],
        "total": "39.98",
        "shipping_address": "1 Main St",
    }
    assert events[1]["data"] == {"shipment_id": str(shipment_id)}
    assert events[2]["data"] == {}

    assert get(client_for(staff), url).status_code == 200
    assert get(client_for(other_customer), url).status_code == 404
    assert get(client_for(staff), f"/api/queries/orders/{uuid4()}/events").status_code == 404
    # an id of another kind of aggregate is no order
    assert get(client_for(staff), f"/api/queries/orders/{mug}/events").status_code == 404


def test_a_cancelled_orders_events(client_for, customer, mug):
    order_id = place(customer, (mug, 1))
    order_cancel(order_id=order_id, user_id=customer.pk, is_staff=False, reason="too slow")

    events = get(client_for(customer), f"/api/queries/orders/{order_id}/events").json()

    assert [e["type"] for e in events["results"]] == ["Order.Placed", "Order.Cancelled"]
    assert events["results"][1]["data"] == {"reason": "too slow"}


# --- projections ------------------------------------------------------------------------


def test_projections_status_is_for_staff(client_for, customer, staff, mug):
    place(customer, (mug, 1))
    project("product_catalog")
    head = head_position()

    response = get(client_for(staff), "/api/queries/projections/")

    assert response.status_code == 200
    assert response[POSITION] == "0"  # the slowest projection's position
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    by_name = {p["name"]: p for p in body["results"]}
    assert set(by_name) == {"order_history", "product_catalog", "sales", "activity"}
    for status in by_name.values():
        assert {"name", "position", "head", "lag_events", "lag_seconds", "status",
                "last_error"} <= set(status)
    catalog, history = by_name["product_catalog"], by_name["order_history"]
    assert (catalog["position"], catalog["head"], catalog["lag_events"]) == (head, head, 0)
    assert (catalog["lag_seconds"], catalog["status"], catalog["last_error"]) == (0, "ok", "")
    assert (history["position"], history["lag_events"]) == (0, head)
    assert history["lag_seconds"] >= 0

    denied = get(client_for(customer), "/api/queries/projections/")
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"


# --- freshness ----------------------------------------------------------------------------


def test_min_position_already_reached_answers_at_once(client_for, customer, mug):
    place(customer, (mug, 1))
    project()
    head = head_position()

    for url in ("/api/queries/orders/", "/api/queries/products/"):
        response = get(client_for(customer), url, min_position=head, wait=100)  # clamped
        assert response.status_code == 200
        assert response[POSITION] == str(head)


def test_min_position_not_reached_in_time_is_503_projection_behind(client_for, customer, mug):
    place(customer, (mug, 1))
    project()
    head = head_position()
    place(customer, (mug, 1))  # not projected

    for url in ("/api/queries/orders/", "/api/queries/products/", "/api/queries/orders/"
                f"{uuid4()}"):
        response = get(client_for(customer), url, min_position=head + 1, wait=0.1)
        assert response.status_code == 503
        assert response.json()["code"] == "projection_behind"
        assert response.json()["detail"]
        assert int(response["Retry-After"]) >= 1
        assert response[POSITION] == str(head)


def test_retry_after_of_a_parked_projection_is_its_retry_time(client_for, customer, mug):
    project()
    Checkpoint.objects.filter(projection="product_catalog").update(
        status=Checkpoint.FAILED, retry_at=timezone.now() + timedelta(seconds=30)
    )
    register("PEN-1")  # not projected

    response = get(client_for(), "/api/queries/products/", min_position=head_position(),
                   wait=0)

    assert response.status_code == 503
    assert 25 <= int(response["Retry-After"]) <= 30


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_position": "-1"}, "min_position"),
        ({"min_position": "abc"}, "min_position"),
        ({"min_position": "1.5"}, "min_position"),
        ({"min_position": "1", "wait": "-2"}, "wait"),
        ({"min_position": "1", "wait": "soon"}, "wait"),
    ],
)
def test_bad_freshness_parameters_are_400(client_for, customer, event_store, params, field):
    for url in ("/api/queries/orders/", "/api/queries/products/"):
        response = get(client_for(customer), url, **params)
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid"
        assert field in body["errors"]


def test_every_query_carries_the_position_of_its_projection(client_for, customer, mug):
    order_id = place(customer, (mug, 1))
    project("order_history")  # the catalog stays behind
    history = projection_position("order_history")
    assert history == head_position() and projection_position("product_catalog") == 0
    client = client_for(customer)

    assert get(client, "/api/queries/orders/")[POSITION] == str(history)
    assert get(client, f"/api/queries/orders/{order_id}")[POSITION] == str(history)
    assert get(client, f"/api/queries/orders/{order_id}/events")[POSITION] == str(history)
    assert get(client, f"/api/queries/orders/{uuid4()}")[POSITION] == str(history)  # 404
    assert get(client, "/api/queries/products/")[POSITION] == "0"
    assert get(client, "/api/queries/projections/")[POSITION] == "0"  # 403


def test_money_is_two_places_even_for_round_prices(client_for, customer, event_store):
    product_id = register("BOX-1", "Box", price="20", stock=5)
    place(customer, (product_id, 2))
    project()

    [order] = get(client_for(customer), "/api/queries/orders/").json()["results"]
    [product] = get(client_for(), "/api/queries/products/").json()["results"]

    assert (order["total"], order["lines"][0]["unit_price"]) == ("40.00", "20.00")
    assert order["lines"][0]["line_total"] == "40.00"
    assert product["price"] == "20.00"
    assert Decimal(order["total"]) == Decimal("40")


@pytest.mark.parametrize("shipped", [False, True])
@pytest.mark.parametrize("total", ["40", "40.5", "1234567890.99", "0.00"])
def test_order_rows_are_sent_as_drf_would_represent_their_declared_fields(shipped, total):
    # The order history renders rows from a plan made once per serializer class
    # (OrderOutputSerializer); field by field it must send what DRF itself would.
    from rest_framework import serializers

    from projections.apis import OrderOutputSerializer, OrderShipmentSerializer
    from projections.models import OrderHistory

    now = timezone.now()
    row = OrderHistory(
        order_id=uuid4(), number=None if shipped else 7, customer_id=1, customer="ann",
        status="shipped" if shipped else "placed", total=Decimal(total),
        shipping_address="1 Road", placed_at=now, version=2,
        lines=[{"sku": "MUG-1", "quantity": 1, "unit_price": "1.50"}],
        shipment_id=uuid4() if shipped else None, carrier="DHL" if shipped else None,
        shipment_status="dispatched" if shipped else None,
        shipment_updated_at=now + timedelta(seconds=1) if shipped else None,
    )

    sent = OrderOutputSerializer(row).data

    assert sent == serializers.Serializer.to_representation(OrderOutputSerializer(), row)
    assert sent["total"] == f"{Decimal(total):.2f}"
    if shipped:
        assert sent["shipment"] == serializers.Serializer.to_representation(
            OrderShipmentSerializer(), row
        )
    assert OrderOutputSerializer([row, row], many=True).data == [sent, sent]
