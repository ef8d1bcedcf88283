"""Shipment commands: each keeps the order's status in step in the same atomic save.

Each runs in a unit of work (``shop.unit_of_work``): the transaction starts at
``with``; the shipment's and the order's writer locks are held from ``lock()`` until
``commit`` saves both in one atomic write.
"""

from __future__ import annotations

from uuid import UUID

from orders.domain import Order
from shipping.domain import DELIVERED, Shipment
from shop.errors import InvalidInput, NotFound
from shop.eventstore import Saved
from shop.unit_of_work import UnitOfWork, retry_on_conflict


@retry_on_conflict
def shipment_create(*, uow: UnitOfWork, order_id: UUID, carrier: str) -> Saved:
    """Create a shipment for a placed order and mark the order shipped."""
    with uow:
        uow.lock(order_id)
        try:
            # The order id comes from the body: an unknown one is a field error, not a 404.
            order = uow.load(order_id, Order)
        except NotFound:
            raise InvalidInput.field("order_id", f"Unknown order {order_id}.") from None
        shipment = Shipment(order_id=order.id, carrier=carrier)
        order.ship(shipment.id)
        return uow.commit(shipment, order)


@retry_on_conflict
def shipment_change_status(*, uow: UnitOfWork, shipment_id: UUID,
                           status: str) -> Saved:
    """Move a shipment forward; delivering it delivers the order too."""
    with uow:
        uow.lock(shipment_id)
        shipment = uow.load(shipment_id, Shipment)
        shipment.advance(status)
        if status != DELIVERED:
            return uow.commit(shipment)
        uow.lock(shipment.order_id)
        order = uow.load(shipment.order_id, Order)
        order.deliver()
        return uow.commit(shipment, order)
