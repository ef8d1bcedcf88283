"""Words the back office shows instead of the code's names: a status ("in transit"), a
projection ("Order history"), an event of an order's timeline as a sentence
("Shipment dispatched (DHL)") and which aggregate's version it is ("shipment v2")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backoffice.money import money


def label(status: str | None) -> str:
    """A status as staff read it: ``in_transit`` is "in transit"."""
    return (status or "").replace("_", " ")


def projection_name(name: str) -> str:
    """A projection as staff read it: ``order_history`` is "Order history"."""
    return name.replace("_", " ").capitalize()


def order_name(order: Any) -> str:
    """"order 10432" (or "the order" while its row is not projected yet)."""
    number = getattr(order, "number", None)
    return f"order {number}" if number else "the order"


def _with(carrier: str | None) -> str:
    return f" ({carrier})" if carrier else ""


#: What each event of an order's timeline says, from its data and the order's carrier.
EVENT_SENTENCES: dict[str, Callable[[dict[str, Any], str | None], str]] = {
    "Order.Placed": lambda d, c: f"Order placed for {money(d.get('total'))}",
    "Order.Cancelled": lambda d, c: (
        f"Order cancelled: {d['reason']}" if d.get("reason") else "Order cancelled"),
    "Order.Shipped": lambda d, c: "Order shipped",
    "Order.Delivered": lambda d, c: "Order delivered",
    "Shipment.Created": lambda d, c: f"Shipment created{_with(d.get('carrier') or c)}",
    "Shipment.Dispatched": lambda d, c: f"Shipment dispatched{_with(c)}",
    "Shipment.WentInTransit": lambda d, c: f"Shipment in transit{_with(c)}",
    "Shipment.Delivered": lambda d, c: f"Shipment delivered{_with(c)}",
}


def event_sentence(event_type: str, data: dict[str, Any], carrier: str | None = None) -> str:
    """"Shipment dispatched (DHL)"; an event type it does not know, in words."""
    say = EVENT_SENTENCES.get(event_type)
    if say is not None:
        return say(data, carrier)
    aggregate, _, what = event_type.partition(".")
    words = "".join(f" {ch.lower()}" if ch.isupper() else ch for ch in what).strip()
    return f"{aggregate} {words}".strip()


def version_label(aggregate: str, version: int | None) -> str:
    """Which aggregate's version an event made: "order v2", "shipment v1"."""
    return f"{aggregate} v{version}" if version else ""
