"""Helpers for the read-side tests: produce events through the command services and
project them, then read read-model rows as plain, comparable data."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from django.db.models import Model

from catalog.services import product_register
from orders.services import order_place
from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up


def register(sku: str, name: str | None = None, price: str = "10.00", stock: int = 100) -> UUID:
    saved = product_register(sku=sku, name=name or sku, price=Decimal(price), stock=stock)
    return saved.aggregate_id


def place(user, *lines: tuple[UUID, int], address: str = "1 Main St") -> UUID:
    saved, _total = order_place(
        customer_id=user.pk,
        customer=user.get_username(),
        lines=list(lines),
        shipping_address=address,
    )
    return saved.aggregate_id


def project(*names: str, batch_size: int | None = None) -> int:
    """Catch up the named projections (all when none named); events applied."""
    return sum(
        catch_up(get_projector(name), batch_size=batch_size) for name in names or PROJECTORS
    )


def rows(model: type[Model]) -> list[dict]:
    """Every row of a read model as dicts, in primary-key order."""
    return list(model.objects.order_by("pk").values())
