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
from django.db.models import QuerySet, Sum

from orders.domain import Order
from projections.models import (
    Activity,
    Checkpoint,
    OrderHistory,
    ProductCatalog,
    SalesDaily,
    SalesProduct,
    SalesProductDaily,
)
from projections.runner import wait_for
from projections.status import ProjectionStatus, projection_statuses
from shop.errors import NotFound
from shop.eventstore import events_with_metadata, head_position
from shop.metadata import Metadata

User = AbstractBaseUser | AnonymousUser

# Fields every stored event has; the rest is the event's ``data``.
EVENT_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def product_list() -> QuerySet[ProductCatalog]:
    """The whole catalog (a search: ``projections.search.search_products``)."""
    return ProductCatalog.objects.all()


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


def order_get(*, user: User, order_id: UUID, only: Iterable[str] = ()) -> OrderHistory:
    """One order the user may see; another customer's order is not found. ``only``:
    read just these columns."""
    orders = order_list(user=user).filter(order_id=order_id)
    order = (orders.only(*only) if only else orders).first()
    if order is None:
        raise NotFound(f"Order {order_id} was not found.")
    return order


def order_events(*, user: User, order_id: UUID) -> list[dict[str, Any]]:
    """The order's stored events, oldest first, as ``{type, version, timestamp, actor,
    data}`` (staff also see ``via``, ``request_id`` and ``causation_id``).

    Read from the event store, not the read model, so ownership is decided by the
    ``Order.Placed`` event itself and the timeline is right even while the order
    history lags. A customer sees who acted only as "you" or "the shop", never a staff
    member's name, and not the ``customer_id`` their order carries.
    """
    events = events_with_metadata(order_id)
    placed = events[0][0] if events else None
    if not isinstance(placed, Order.Placed) or (
        not user.is_staff and placed.customer_id != user.pk
    ):
        raise NotFound(f"Order {order_id} was not found.")
    if user.is_staff:
        return [event_as_dict(event, metadata) for event, metadata in events]
    return [as_seen_by_customer(event_as_dict(event), metadata, user)
            for event, metadata in events]


def aggregate_events(aggregate_id: UUID) -> list[dict[str, Any]]:
    """Any aggregate's stored events with their metadata, oldest first (staff tools: a
    shipment's timeline)."""
    return [event_as_dict(event, metadata)
            for event, metadata in events_with_metadata(aggregate_id)]


def event_as_dict(event: Any, metadata: Metadata | None = None) -> dict[str, Any]:
    """``{type, version, timestamp, data}``, ``data`` being the event's own fields; with
    ``metadata``, also ``actor``, ``via``, ``request_id`` and ``causation_id``."""
    as_dict = {
        "type": type(event).__qualname__,
        "version": event.originator_version,
        "timestamp": event.timestamp,
        "data": {
            key: json_safe(value)
            for key, value in vars(event).items()
            if key not in EVENT_ENVELOPE
        },
    }
    if metadata is not None:
        as_dict.update(metadata.as_dict())
    return as_dict


def as_seen_by_customer(as_dict: dict[str, Any], metadata: Metadata, user: User) -> dict:
    """An event of a customer's own order as they see it: who acted is "you" or "the
    shop" (staff and the system alike), and no ``customer_id``."""
    actor = metadata.actor
    if actor.kind == "customer" and actor.user_id == user.pk:
        as_dict["actor"] = {"kind": "customer", "name": "you"}
    else:
        as_dict["actor"] = {"kind": actor.kind, "name": "the shop"}
    as_dict["data"].pop("customer_id", None)
    return as_dict


def activity_list(
    *,
    actor: str | None = None,
    aggregate: str | None = None,
    type: str | None = None,  # noqa: A002 (the API's parameter)
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[Activity]:
    """Who did what, newest first. ``actor``: a username, or ``system`` for the shop's
    own acts; ``aggregate``: an aggregate id, a SKU or an order number (an order's
    number also finds its shipment's acts); ``type``: an event type; ``start``/``end``:
    the times between which it happened (inclusive)."""
    rows = Activity.objects.all()
    if actor == "system":
        rows = rows.filter(actor_kind="system")
    elif actor:
        rows = rows.filter(actor_username=actor)
    if aggregate:
        try:
            rows = rows.filter(aggregate_id=UUID(aggregate))
        except ValueError:
            rows = rows.filter(subject=aggregate)
    if type:
        rows = rows.filter(type=type)
    if start is not None:
        rows = rows.filter(at__gte=start)
    if end is not None:
        rows = rows.filter(at__lte=end)
    return rows


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


def orders_export(user: User) -> list[dict[str, Any]]:
    """The ``orders`` section of a customer's export (``shop.accounts.privacy``): each
    of their orders as the order history holds it (lines, shipment, address), with its
    events and the shipment's, who caused each as the customer sees it. The order
    history is first caught up to the log's head (within a few seconds), so an order
    placed just before is in it."""
    wait_for("order_history", head_position(), timeout=5)
    exported = []
    for order in OrderHistory.objects.filter(customer_id=user.pk).order_by("placed_at"):
        events = events_with_metadata(order.order_id)
        if order.shipment_id:
            events += events_with_metadata(order.shipment_id)
        exported.append({
            "order_id": str(order.order_id),
            "number": order.number,
            "customer": order.customer,
            "status": order.status,
            "total": str(order.total),
            "shipping_address": order.shipping_address,
            "placed_at": order.placed_at.isoformat(),
            "lines": order.lines,
            "shipment": None if order.shipment_id is None else {
                "shipment_id": str(order.shipment_id),
                "carrier": order.carrier,
                "status": order.shipment_status,
                "updated_at": json_safe(order.shipment_updated_at),
            },
            "events": [as_seen_by_customer(event_as_dict(event, metadata), metadata, user)
                       for event, metadata in events],
        })
    return exported
