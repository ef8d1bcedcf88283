"""The tests' one vocabulary: givens written through the command services, catching
the read side up, reading read-model rows, and "the log is unchanged".

Every tier uses these (unit tests need none: they give past events to aggregates).
The HTTP tiers' own vocabulary (clients, processes, load) is in ``tests/support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from uuid import UUID

from django.db.models import Model

from catalog.services import product_register
from orders.services import order_place
from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up
from shipping.services import shipment_create
from shop.eventstore import head_position


def register(sku: str = "MUG-1", name: str | None = None, price: str = "10.00",
             stock: int = 100, category: str = "") -> UUID:
    """Register a product (named after its SKU unless ``name``); its id."""
    saved = product_register(sku=sku, name=name or sku, price=Decimal(price), stock=stock,
                             category=category)
    return saved.aggregate_id


def place(user, *lines: tuple[UUID, int], address: str = "1 Main St") -> UUID:
    """Place ``user``'s order of ``(product_id, quantity)`` lines; its id."""
    saved, _total = order_place(
        customer_id=user.pk,
        customer=user.get_username(),
        lines=list(lines),
        shipping_address=address,
    )
    return saved.aggregate_id


def ship(order_id: UUID, carrier: str = "DHL") -> UUID:
    """Create the order's shipment; its id."""
    return shipment_create(order_id=order_id, carrier=carrier).aggregate_id


def project(*names: str, batch_size: int | None = None) -> int:
    """Catch up the named projections (all when none named) in this process; the
    number of events applied. (In a test's transaction the commit-time trigger never
    fires, so this is how a test brings the read side up to the log's head.)"""
    return sum(
        catch_up(get_projector(name), batch_size=batch_size) for name in names or PROJECTORS
    )


def rows(model: type[Model]) -> list[dict]:
    """Every row of a read model as dicts, in primary-key order."""
    return list(model.objects.order_by("pk").values())


@contextmanager
def log_unchanged() -> Iterator[None]:
    """A rejected command appends no event: the log head is where it was."""
    before = head_position()
    yield
    assert head_position() == before, "a rejected command appended events"
