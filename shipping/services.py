"""Shipment commands: each keeps the order's status in step in the same atomic save."""

from __future__ import annotations

from uuid import UUID

from orders.domain import Order
from shipping.domain import DELIVERED, Shipment
from shop.errors import InvalidInput, NotFound
from shop.eventstore import Saved, load, retry_on_conflict, save


@retry_on_conflict
def shipment_create(*, order_id: UUID, carrier: str) -> Saved:
    """Create a shipment for a placed order and mark the order shipped."""
    order = _load_order(order_id)
    shipment = Shipment(order_id=order.id, carrier=carrier)
    order.ship(shipment.id)
    return save(shipment, order)


@retry_on_conflict
def shipment_change_status(*, shipment_id: UUID, status: str) -> Saved:
    """Move a shipment forward; delivering it delivers the order too."""
    shipment = load(shipment_id, Shipment)
    shipment.advance(status)
    if status == DELIVERED:
        order = load(shipment.order_id, Order)
        order.deliver()
        return save(shipment, order)
    return save(shipment)


def _load_order(order_id: UUID) -> Order:
    # The order id comes from the body, so an unknown one is a field error, not a 404.
    try:
        return load(order_id, Order)
    except NotFound:
        raise InvalidInput.field("order_id", f"Unknown order {order_id}.") from None
