"""Orders in the admin: the order history list (filters, search), the order page with
lines, shipment and event timeline, and cancelling through the orders service."""

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


def listed(response) -> set:
    assert response.status_code == 200
    return {order.order_id for order in response.context["cl"].result_list}


@pytest.fixture
def three_orders(given_product, given_order, given_shipment, customer, other_customer,
                 caught_up):
    mug = given_product("MUG-1", stock=50)
    tee = given_product("TEE-9", name="Red shirt", price="5.00", stock=50)
    mine = given_order([(mug, 1)])
    theirs = given_order([(tee, 2)], user=other_customer)
    shipped = given_order([(mug, 1), (tee, 1)])
    given_shipment(shipped)
    caught_up()
    return mine, theirs, shipped


def test_order_history_list_filters_and_search(staff_client, three_orders):
    mine, theirs, shipped = three_orders
    assert listed(staff_client.get(CHANGELIST)) == {mine, theirs, shipped}

    assert listed(staff_client.get(CHANGELIST, {"status": "placed"})) == {mine, theirs}
    assert listed(staff_client.get(CHANGELIST, {"status": "cancelled"})) == set()
    assert listed(staff_client.get(CHANGELIST, {"shipment_status": "created"})) == {shipped}
    assert listed(staff_client.get(CHANGELIST, {"shipment_status": "none"})) == {
        mine, theirs
    }
    today = OrderHistory.objects.get(pk=mine).placed_at
    assert listed(staff_client.get(CHANGELIST, {
        "placed_at__year": today.year, "placed_at__month": today.month,
        "placed_at__day": today.day,
    })) == {mine, theirs, shipped}

    assert listed(staff_client.get(CHANGELIST, {"q": "jane"})) == {theirs}
    assert listed(staff_client.get(CHANGELIST, {"q": str(mine)})) == {mine}
    assert listed(staff_client.get(CHANGELIST, {"q": str(mine)[:8]})) == {mine}
    assert listed(staff_client.get(CHANGELIST, {"q": "tee-9"})) == {theirs, shipped}
    number = OrderHistory.objects.get(pk=theirs).number
    assert listed(staff_client.get(CHANGELIST, {"q": str(number)})) == {theirs}
    assert listed(staff_client.get(CHANGELIST, {"q": f"#{number}"})) == {theirs}
    assert listed(staff_client.get(CHANGELIST, {"q": "MUG-1", "status": "placed"})) == {mine}


def test_order_page_shows_lines_shipment_and_timeline(staff_client, three_orders):
    _mine, _theirs, shipped = three_orders
    response = staff_client.get(order_url("change", shipped))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    body = response.content.decode()
    assert "MUG-1" in body and "Red shirt" in body and "24.99" in body  # lines and total
    assert "DHL" in body  # the shipment
    timeline = response.context["timeline"]
    assert [(e["aggregate"], e["type"], e["version"]) for e in timeline] == [
        ("order", "Order.Placed", 1),
        ("shipment", "Shipment.Created", 1),
        ("order", "Order.Shipped", 2),
    ]
    assert timeline[0]["data"]["customer"] == "john"
    for event in timeline:
        assert event["type"] in body
    assert body.count('class="timeline-event"') == 3
    # Shipped: only the shipment can move on now.
    assert response.context["can_advance"] and not response.context["can_cancel"]
    assert order_url("shipment_status", shipped) in body
    assert order_url("cancel", shipped) not in body


def test_cancel_from_the_order_page(staff_client, given_order, caught_up, staff):
    order_id = given_order()
    caught_up()
    page = staff_client.get(order_url("change", order_id)).content.decode()
    assert order_url("cancel", order_id) in page
    assert staff_client.get(order_url("cancel", order_id)).status_code == 200

    response = staff_client.post(order_url("cancel", order_id), {"reason": "Customer called"})
    assert response.status_code == 302 and response.url == order_url("change", order_id)
    number = OrderHistory.objects.get(pk=order_id).number
    assert f"Cancelled order {number};" in messages_of(response)[0]
    order = get_app().repository.get(order_id)
    assert (order.status, order.cancel_reason) == ("cancelled", "Customer called")
    product = get_app().repository.get(order.lines[0]["product_id"])
    assert product.reserved == 0  # the reservation was released

    caught_up()
    response = staff_client.get(order_url("change", order_id))
    assert [e["type"] for e in response.context["timeline"]] == [
        "Order.Placed", "Order.Cancelled"
    ]
    assert not response.context["can_cancel"]


def test_cancelling_a_cancelled_order_shows_the_error_and_appends_nothing(
    staff_client, given_order
):
    order_id = given_order()
    staff_client.post(order_url("cancel", order_id), {"reason": ""})
    with log_unchanged():
        response = staff_client.post(order_url("cancel", order_id), {"reason": ""})
    assert response.status_code == 200
    assert any("is cancelled; only a placed order" in m for m in messages_of(response))


def test_cancel_action_on_the_changelist(staff_client, three_orders):
    mine, theirs, shipped = three_orders
    response = staff_client.post(CHANGELIST, {
        "action": "cancel_orders", "_selected_action": [str(mine), str(shipped)],
    })
    assert response.status_code == 302
    messages = messages_of(response)
    number = OrderHistory.objects.get(pk=mine).number
    assert f"Cancelled order {number}." in messages
    assert any("is shipped; only a placed order" in m for m in messages)
    assert get_app().repository.get(mine).status == "cancelled"
    assert get_app().repository.get(shipped).status == "shipped"
    assert get_app().repository.get(theirs).status == "placed"


def test_read_models_cannot_be_added_changed_or_deleted(staff_client, three_orders):
    mine, _theirs, _shipped = three_orders
    assert staff_client.get(reverse("admin:projections_orderhistory_add")).status_code == 403
    assert staff_client.get(order_url("delete", mine)).status_code == 403
    response = staff_client.post(order_url("change", mine), {"status": "delivered"})
    assert response.status_code == 403
    assert OrderHistory.objects.get(pk=mine).status == "placed"
    actions = staff_client.get(CHANGELIST).context["action_form"].fields["action"].choices
    assert "delete_selected" not in {name for name, _label in actions}


@pytest.mark.parametrize("form", ["cancel", "shipment_create", "shipment_status"])
def test_a_form_on_the_order_page_shown_before_a_change_saves_nothing(
    form, staff_client, given_order, given_shipment, caught_up
):
    """Each command form embedded in the order page posts the version it was shown
    for; if a colleague changed the aggregate meanwhile, nothing is saved."""
    from shipping.services import shipment_change_status, shipment_create

    order_id = given_order()
    shipment_id = given_shipment(order_id) if form == "shipment_status" else None
    caught_up()
    page = staff_client.get(order_url("change", order_id))
    context_name = {"cancel": "cancel_form", "shipment_create": "shipment_create_form",
                    "shipment_status": "shipment_advance_form"}[form]
    shown = page.context[context_name]["shown_version"].value()
    row = OrderHistory.objects.get(pk=order_id)
    assert shown == (row.shipment_version if shipment_id else row.version)
    assert f'name="shown_version" value="{shown}"' in page.content.decode()

    # A colleague, meanwhile: the order gets shipped, or its shipment dispatched.
    if shipment_id:
        shipment_change_status(shipment_id=shipment_id, status="dispatched")
        data = {"status": "delivered"}
    else:
        shipment_create(order_id=order_id, carrier="DHL")
        data = {"reason": "Customer called"} if form == "cancel" else {"carrier": "UPS"}

    with log_unchanged():
        stale = staff_client.post(order_url(form, order_id), {**data, "shown_version": shown})
    assert stale.status_code == 200  # the form again, not a redirect
    [message] = messages_of(stale)
    number = OrderHistory.objects.get(pk=order_id).number
    subject = f"The shipment of order {number}" if shipment_id else f"Order {number}"
    assert message.startswith(f"{subject} changed since you read it")
    assert "Nothing was saved" in message and str(order_id) not in message
