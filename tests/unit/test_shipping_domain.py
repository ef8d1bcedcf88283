"""Shipment: created → dispatched → in_transit → delivered, forward only."""

from uuid import uuid4

import pytest

from shipping.domain import (
    CREATED,
    DELIVERED,
    DISPATCHED,
    IN_TRANSIT,
    STATUSES,
    InvalidTransition,
    Shipment,
)

EVENT_FOR = {
    DISPATCHED: Shipment.Dispatched,
    IN_TRANSIT: Shipment.WentInTransit,
    DELIVERED: Shipment.Delivered,
}


def a_shipment(status: str = CREATED) -> Shipment:
    shipment = Shipment(order_id=uuid4(), carrier="DHL")
    if status != CREATED:
        shipment.advance(status)
    shipment.collect_events()
    return shipment


def test_create_records_created():
    order_id = uuid4()
    shipment = Shipment(order_id=order_id, carrier="DHL")
    [created] = shipment.collect_events()
    assert isinstance(created, Shipment.Created)
    assert (created.order_id, created.carrier) == (order_id, "DHL")
    assert shipment.status == CREATED


@pytest.mark.parametrize(
    ("start", "target"),
    [(a, b) for i, a in enumerate(STATUSES) for b in STATUSES[i + 1:]],
)
def test_advance_forward_records_the_event_for_the_target(start, target):
    shipment = a_shipment(start)
    shipment.advance(target)
    [moved] = shipment.collect_events()
    assert isinstance(moved, EVENT_FOR[target])
    assert shipment.status == target


def test_each_step_in_order():
    shipment = a_shipment()
    for status in (DISPATCHED, IN_TRANSIT, DELIVERED):
        shipment.advance(status)
    assert [type(e) for e in shipment.collect_events()] == [
        Shipment.Dispatched, Shipment.WentInTransit, Shipment.Delivered,
    ]
    assert shipment.version == 4


@pytest.mark.parametrize(
    ("start", "target"),
    [(a, b) for i, a in enumerate(STATUSES) for b in STATUSES[: i + 1]],
)
def test_backward_or_same_move_is_an_invalid_transition(start, target):
    shipment = a_shipment(start)
    with pytest.raises(InvalidTransition) as exc:
        shipment.advance(target)
    assert exc.value.code == "invalid_transition" and exc.value.status == 409
    assert shipment.collect_events() == []
    assert shipment.status == start


def test_unknown_status_is_an_invalid_transition():
    shipment = a_shipment()
    with pytest.raises(InvalidTransition):
        shipment.advance("lost")
    assert shipment.collect_events() == []
