"""Shipping's write model: a shipment that moves forward through its statuses."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shop.errors import Conflict

CREATED, DISPATCHED, IN_TRANSIT, DELIVERED = "created", "dispatched", "in_transit", "delivered"
STATUSES = (CREATED, DISPATCHED, IN_TRANSIT, DELIVERED)


def next_status(status: str | None) -> str | None:
    """The step after ``status``: None when delivered (or unknown)."""
    if status not in STATUSES:
        return None
    index = STATUSES.index(status) + 1
    return STATUSES[index] if index < len(STATUSES) else None


def statuses_after(status: str | None) -> tuple[str, ...]:
    """Where a shipment in ``status`` may move: any later status (skipping allowed)."""
    if status not in STATUSES:
        return ()
    return STATUSES[STATUSES.index(status) + 1:]


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_detail = "A shipment's status only moves forward."


class Shipment(Aggregate):
    @event("Created")
    def __init__(self, order_id: UUID, carrier: str) -> None:
        self.order_id = order_id
        self.carrier = carrier
        self.status = CREATED

    def advance(self, status: str) -> None:
        """Move forward to ``status``; skipping a step is allowed, going back is not."""
        if status not in STATUSES:
            raise InvalidTransition(f"Unknown shipment status {status!r}.")
        if STATUSES.index(status) <= STATUSES.index(self.status):
            raise InvalidTransition(
                f"Shipment {self.id} is {self.status}; it cannot move to {status}."
            )
        {DISPATCHED: self._dispatched, IN_TRANSIT: self._went_in_transit,
         DELIVERED: self._delivered}[status]()

    @event("Dispatched")
    def _dispatched(self) -> None:
        self.status = DISPATCHED

    @event("WentInTransit")
    def _went_in_transit(self) -> None:
        self.status = IN_TRANSIT

    @event("Delivered")
    def _delivered(self) -> None:
        self.status = DELIVERED
