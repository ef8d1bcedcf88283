"""Shipments in the admin: create one for an order and advance its status, from the
order page and as changelist actions, through the shipping services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projections.models import OrderHistory
from shop.eventstore import get_app
from tests.admin.helpers import messages_of
from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:projections_orderhistory_changelist")


def order_url(view: str, order_id) -> str:
    return reverse(f"admin:projections_orderhistory_{view}", args=[order_id])


def test_create_shipment_from_the_order_page(staff_client, given_order, caught_up):
    order_id = given_order()
    caught_up()
    page = staff_client.get(order_url("change", order_id))
    assert page.context["can_ship"]
    assert order_url("shipment_create", order_id) in page.content.decode()
    assert staff_client.get(order_url("shipment_create", order_id)).status_code == 200

    response = staff_client.post(order_url("shipment_create", order_id), {"carrier": "UPS"})
    assert response.status_code == 302 and response.url == order_url("change", order_id)
    number = OrderHistory.objects.get(pk=order_id).number
    assert f"Created a shipment for order {number};" in messages_of(response)[0]
    order = get_app().repository.get(order_id)
    assert order.status == "shipped"
    shipment = get_app().repository.get(order.shipment_id)
    assert (shipment.carrier, shipment.status) == ("UPS", "created")


def test_create_shipment_for_a_cancelled_order_is_refused(staff_client, given_order):
    from orders.services import order_cancel

    order_id = given_order()
    order_cancel(order_id=order_id, user_id=0, is_staff=True)
    with log_unchanged():
        response = staff_client.post(order_url("shipment_create", order_id), {"carrier": "UPS"})
    assert response.status_code == 200
    assert any("only a placed order can be shipped" in m for m in messages_of(response))


def test_create_shipment_needs_a_carrier(staff_client, given_order):
    order_id = given_order()
    with log_unchanged():
        response = staff_client.post(order_url("shipment_create", order_id), {"carrier": ""})
    assert "carrier" in response.context["form"].errors


def test_advance_shipment_from_the_order_page(staff_client, given_order, given_shipment,
                                              caught_up):
    order_id = given_order()
    shipment_id = given_shipment(order_id)
    caught_up()
    response = staff_client.get(order_url("shipment_status", order_id))
    assert response.context["form"].initial == {"status": "dispatched"}

    response = staff_client.post(order_url("shipment_status", order_id), {"status": "dispatched"})
    assert response.status_code == 302
    assert "is now dispatched" in messages_of(response)[0]
    assert get_app().repository.get(shipment_id).status == "dispatched"

    response = staff_client.post(order_url("shipment_status", order_id), {"status": "delivered"})
    assert response.status_code == 302
    assert get_app().repository.get(shipment_id).status == "delivered"
    assert get_app().repository.get(order_id).status == "delivered"

    caught_up()
    page = staff_client.get(order_url("change", order_id))
    assert not page.context["can_advance"]
    assert [e["type"] for e in page.context["timeline"]][-2:] in (
        ["Shipment.Delivered", "Order.Delivered"], ["Order.Delivered", "Shipment.Delivered"]
    )


def test_the_status_form_offers_only_the_statuses_ahead(staff_client, given_order,
                                                       given_shipment, caught_up):
    from shipping.services import shipment_change_status

    order_id = given_order()
    shipment_id = given_shipment(order_id)
    shipment_change_status(shipment_id=shipment_id, status="dispatched")
    caught_up()

    form = staff_client.get(order_url("shipment_status", order_id)).context["form"]
    assert form.fields["status"].widget.choices == [("in_transit", "in transit"),
                                                    ("delivered", "delivered")]
    page = staff_client.get(order_url("change", order_id)).content.decode()
    options = page.split('id="shipment-status-form"')[1].split("</form>")[0]
    assert 'value="in_transit"' in options and 'value="delivered"' in options
    assert 'value="created"' not in options and 'value="dispatched"' not in options

    with log_unchanged():  # a backward move is not even offered
        response = staff_client.post(order_url("shipment_status", order_id),
                                     {"status": "created"})
    assert response.status_code == 200
    assert "status" in response.context["form"].errors


def test_moving_a_shipment_backwards_shows_the_error(staff_client, given_order, given_shipment,
                                                     caught_up):
    from shipping.services import shipment_change_status

    order_id = given_order()
    shipment_id = given_shipment(order_id)
    caught_up()
    shipment_change_status(shipment_id=shipment_id, status="in_transit")  # the row lags
    with log_unchanged():
        response = staff_client.post(order_url("shipment_status", order_id),
                                     {"status": "dispatched"})
    assert response.status_code == 200
    assert any("cannot move to dispatched" in m for m in messages_of(response))


def test_advancing_an_order_without_shipment_is_refused(staff_client, given_order, caught_up):
    order_id = given_order()
    caught_up()
    with log_unchanged():
        response = staff_client.post(order_url("shipment_status", order_id),
                                     {"status": "dispatched"})
    assert response.status_code == 200
    assert any("has no shipment" in m for m in messages_of(response))


def test_advance_action_on_the_changelist(staff_client, given_product, given_order,
                                          given_shipment, caught_up):
    from shipping.services import shipment_change_status

    product = given_product(stock=10)
    first, second, unshipped, delivered = (given_order([(product, 1)]) for _ in range(4))
    shipments = [given_shipment(first), given_shipment(second)]
    shipment_change_status(shipment_id=given_shipment(delivered), status="delivered")
    caught_up()

    # the shipments changelist: orders filtered by their shipment's status
    response = staff_client.get(CHANGELIST, {"shipment_status": "created"})
    assert {o.order_id for o in response.context["cl"].result_list} == {first, second}

    response = staff_client.post(CHANGELIST, {
        "action": "advance_shipments_to_in_transit",
        "_selected_action": [str(first), str(second), str(unshipped), str(delivered)],
    })
    assert response.status_code == 302
    messages = messages_of(response)
    numbers = dict(OrderHistory.objects.values_list("order_id", "number"))
    # a failure says which order it is about, by the number staff see in the list
    assert any(m.startswith(f"Order {numbers[delivered]}: ") and "cannot move" in m
               for m in messages)
    assert any(f"Shipment of order {numbers[first]} is now in transit" in m for m in messages)
    assert any("1 selected order(s) have no shipment" in m for m in messages)
    assert sum("is now in transit" in m for m in messages) == 2
    assert [get_app().repository.get(s).status for s in shipments] == ["in_transit"] * 2
