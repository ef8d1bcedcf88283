"""The orders' write model: an order with its priced lines and its status."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shop.errors import InvalidState
from shop.personal_data import Personal
from shop.text import check_visible_text

PLACED, CANCELLED, SHIPPED, DELIVERED = "placed", "cancelled", "shipped", "delivered"
STATUSES = (PLACED, SHIPPED, DELIVERED, CANCELLED)

# The orders' input rules (the API's serializers and the admin's forms read them).
MAX_QUANTITY = 1000
MAX_LINES = 100


# A customer's name and shipping address are theirs: stored sealed with their own key,
# so forgetting them makes these unreadable (shop/personal_data.py).
CUSTOMER_DATA = Personal(subject="customer_id", fields=("customer", "shipping_address"))


class Order(Aggregate):
    """A customer's order. ``lines`` are plain dicts:
    ``{"product_id": UUID, "sku": str, "quantity": int, "unit_price": Decimal}``.
    Once its customer is forgotten, ``customer`` and ``shipping_address`` read as None."""

    personal_data = CUSTOMER_DATA  # in snapshots

    class Placed(Aggregate.Created):
        customer_id: int
        customer: str | None
        lines: list[dict]
        total: Decimal
        shipping_address: str | None
        personal_data = CUSTOMER_DATA

    @event(Placed)
    def __init__(
        self,
        customer_id: int,
        customer: str,
        lines: list[dict],
        total: Decimal,
        shipping_address: str,
    ) -> None:
        self.customer_id = customer_id
        self.customer = customer
        self.lines = lines
        self.total = total
        self.shipping_address = shipping_address
        self.status = PLACED
        self.shipment_id: UUID | None = None
        self.cancel_reason = ""

    @classmethod
    def place(
        cls, *, customer_id: int, customer: str, lines: list[dict], shipping_address: str
    ) -> Order:
        check_visible_text("shipping_address", shipping_address, label="Shipping address",
                           multiline=True)
        total = sum(
            (line["unit_price"] * line["quantity"] for line in lines), start=Decimal("0.00")
        )
        return cls(
            customer_id=customer_id,
            customer=customer,
            lines=lines,
            total=total.quantize(Decimal("0.01")),
            shipping_address=shipping_address,
        )

    def is_visible_to(self, user_id: int, is_staff: bool) -> bool:
        """Staff may see and act on every order, a customer only on their own."""
        return is_staff or self.customer_id == user_id

    def cancel(self, reason: str = "") -> None:
        self._require(PLACED, "cancelled")
        self._cancelled(reason=reason)

    @event("Cancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = CANCELLED
        self.cancel_reason = reason

    def ship(self, shipment_id: UUID) -> None:
        self._require(PLACED, "shipped")
        self._shipped(shipment_id=shipment_id)

    @event("Shipped")
    def _shipped(self, shipment_id: UUID) -> None:
        self.status = SHIPPED
        self.shipment_id = shipment_id

    def deliver(self) -> None:
        self._require(SHIPPED, "delivered")
        self._delivered()

    @event("Delivered")
    def _delivered(self) -> None:
        self.status = DELIVERED

    def _require(self, status: str, action: str) -> None:
        if self.status != status:
            raise InvalidState(
                f"Order {self.id} is {self.status}; only a {status} order can be {action}."
            )
