"""Query-side reads: plain functions over the read-model tables.

The one exception is :func:`order_events`, an order's own stored events (the audit
timeline), the only read of the event store the query API makes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet, Sum

from orders.domain import Order
from projections.models import (
    Checkpoint,
    OrderHistory,
    ProductCatalog,
    SalesDaily,
    SalesProduct,
    SalesProductDaily,
)
from projections.status import ProjectionStatus, projection_statuses
from shop.errors import NotFound
from shop.eventstore import get_app

User = AbstractBaseUser | AnonymousUser

# Fields every stored event has; the rest is the event's ``data``.
EVENT_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def product_list(*, search: str | None = None) -> QuerySet[ProductCatalog]:
    products = ProductCatalog.objects.all()
    if search:
        products = products.filter(Q(sku__icontains=search) | Q(name__icontains=search))
    return products


def order_list(
    *, user: User, customer: str | None = None, number: int | None = None
) -> QuerySet[OrderHistory]:
    """The user's orders; staff see everyone's, or one ``customer``'s (a username).

    ``number``: only the order with that number (if the user may see it).
    """
    orders = OrderHistory.objects.all()
    if number is not None:
        orders = orders.filter(number=number)
    if not user.is_staff:
        return orders.filter(customer_id=user.pk)
    if customer:
        orders = orders.filter(customer=customer)
    return orders


def order_get(*, user: User, order_id: UUID) -> OrderHistory:
    """One order the user may see; another customer's order is not found."""
    order = order_list(user=user).filter(order_id=order_id).first()
    if order is None:
        raise NotFound(f"Order {order_id} was not found.")
    return order


def order_events(*, user: User, order_id: UUID) -> list[dict[str, Any]]:
    """The order's stored events, oldest first, as ``{type, version, timestamp, data}``.

    Read from the event store, not the read model, so ownership is decided by the
    ``Order.Placed`` event itself and the timeline is right even while the order
    history lags.
    """
    events = list(get_app().events.get(order_id))
    placed = events[0] if events else None
    if not isinstance(placed, Order.Placed) or (
        not user.is_staff and placed.customer_id != user.pk
    ):
        raise NotFound(f"Order {order_id} was not found.")
    return [event_as_dict(event) for event in events]


def aggregate_events(aggregate_id: UUID) -> list[dict[str, Any]]:
    """Any aggregate's stored events, oldest first (staff tools: a shipment's timeline)."""
    return [event_as_dict(event) for event in get_app().events.get(aggregate_id)]


def event_as_dict(event: Any) -> dict[str, Any]:
    """``{type, version, timestamp, data}``, ``data`` being the event's own fields."""
    return {
        "type": type(event).__qualname__,
        "version": event.originator_version,
        "timestamp": event.timestamp,
        "data": {
            key: json_safe(value)
            for key, value in vars(event).items()
            if key not in EVENT_ENVELOPE
        },
    }


def json_safe(value: Any) -> Any:
    """Plain JSON values: UUIDs, decimals and times as strings, containers walked."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    return value


def projection_list() -> list[ProjectionStatus]:
    """Every projection's position, the log's head, its lag and its failure if any."""
    return projection_statuses()


def projections_position(names: Iterable[str]) -> int:
    """The position all the named projections have reached: the slowest one's."""
    return min(Checkpoint.objects.positions(names).values(), default=0)


def sales_daily(*, start: date, end: date) -> QuerySet[SalesDaily]:
    """Each day from ``start`` to ``end`` (inclusive) with orders placed, oldest first."""
    return SalesDaily.objects.filter(day__range=(start, end)).order_by("day")


def sales_by_product(*, start: date, end: date, limit: int | None = None) -> list[dict[str, Any]]:
    """Per product over the days ``start``..``end``: ``{product_id, sku, product_name,
    units, revenue}``, highest revenue first (products with no sale left out).

    One aggregate over the per-product-per-day rows, then the products' current names.
    """
    totals = (
        SalesProductDaily.objects.filter(day__range=(start, end))
        .values("product_id")
        .annotate(units=Sum("units"), revenue=Sum("revenue"))
        .filter(units__gt=0)
        .order_by("-revenue", "-units", "product_id")
    )
    if limit is not None:
        totals = totals[:limit]
    totals = list(totals)
    products = SalesProduct.objects.in_bulk([row["product_id"] for row in totals])
    results = []
    for row in totals:
        product = products.get(row["product_id"])
        results.append({
            "product_id": row["product_id"],
            "sku": product.sku if product else "",
            "product_name": product.name if product else "",
            "units": row["units"],
            "revenue": row["revenue"],
        })
    return results
