"""Order: placed → cancelled, or placed → shipped → delivered; nothing else."""

from decimal import Decimal
from uuid import uuid4

import pytest

from orders.domain import CANCELLED, DELIVERED, PLACED, SHIPPED, Order
from shop.errors import InvalidState

MUG, PLATE = uuid4(), uuid4()


def line(product_id, quantity, unit_price, sku="MUG-1") -> dict:
    return {"product_id": product_id, "sku": sku, "quantity": quantity,
            "unit_price": Decimal(unit_price)}


def an_order(status: str = PLACED) -> Order:
    """Given an order in ``status`` whose past events are already collected."""
    order = Order.place(customer_id=7, customer="john", lines=[line(MUG, 3, "19.99")],
                        shipping_address="1 Main St")
    if status in (SHIPPED, DELIVERED):
        order.ship(uuid4())
    if status == DELIVERED:
        order.deliver()
    if status == CANCELLED:
        order.cancel("changed my mind")
    order.collect_events()
    return order


def test_place_records_placed_with_lines_and_total():
    lines = [line(MUG, 3, "19.99"), line(PLATE, 2, "5.05", sku="PLATE")]
    order = Order.place(customer_id=7, customer="john", lines=lines,
                        shipping_address="1 Main St")

    [placed] = order.collect_events()
    assert isinstance(placed, Order.Placed)
    assert placed.customer_id == 7 and placed.customer == "john"
    assert placed.lines == lines
    assert placed.total == Decimal("70.07")
    assert placed.shipping_address == "1 Main St"
    assert order.status == PLACED and order.shipment_id is None


def test_total_has_two_places():
    order = Order.place(customer_id=1, customer="j", lines=[line(MUG, 3, "19.99")],
                        shipping_address="x")
    assert str(order.total) == "59.97"


def test_cancel_records_cancelled_with_reason():
    order = an_order()
    order.cancel("changed my mind")
    [cancelled] = order.collect_events()
    assert isinstance(cancelled, Order.Cancelled)
    assert cancelled.reason == "changed my mind"
    assert order.status == CANCELLED and order.cancel_reason == "changed my mind"


def test_cancel_without_reason():
    order = an_order()
    order.cancel()
    [cancelled] = order.collect_events()
    assert cancelled.reason == ""


@pytest.mark.parametrize("status", [CANCELLED, SHIPPED, DELIVERED])
def test_only_a_placed_order_can_be_cancelled(status):
    order = an_order(status)
    with pytest.raises(InvalidState) as exc:
        order.cancel()
    assert exc.value.code == "invalid_state" and exc.value.status == 409
    assert f"is {status}" in exc.value.detail
    assert order.collect_events() == []
    assert order.status == status


def test_ship_records_shipped_with_the_shipment():
    order = an_order()
    shipment_id = uuid4()
    order.ship(shipment_id)
    [shipped] = order.collect_events()
    assert isinstance(shipped, Order.Shipped)
    assert shipped.shipment_id == shipment_id
    assert order.status == SHIPPED and order.shipment_id == shipment_id


@pytest.mark.parametrize("status", [CANCELLED, SHIPPED, DELIVERED])
def test_only_a_placed_order_can_be_shipped(status):
    order = an_order(status)
    with pytest.raises(InvalidState):
        order.ship(uuid4())
    assert order.collect_events() == []


def test_deliver_records_delivered():
    order = an_order(SHIPPED)
    order.deliver()
    [delivered] = order.collect_events()
    assert isinstance(delivered, Order.Delivered)
    assert order.status == DELIVERED


@pytest.mark.parametrize("status", [PLACED, CANCELLED, DELIVERED])
def test_only_a_shipped_order_can_be_delivered(status):
    order = an_order(status)
    with pytest.raises(InvalidState) as exc:
        order.deliver()
    assert exc.value.code == "invalid_state"
    assert order.collect_events() == []
