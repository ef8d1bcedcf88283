"""The activity log read as sentences: "admin repriced MUG-2 from 12.50 to 13.00 (back
office)". One function per reader-facing phrase, used by the activity API and the back
office alike; the rows themselves (``projections.models.Activity``) hold only values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.models import Activity

#: How each way in reads at the end of a sentence.
WAYS_IN = {
    "api": "API",
    "admin": "back office",
    "command": "management command",
    "beat": "schedule",
}

Money = Callable[[Any], str]

#: What each event type says the actor did, from the row's subject and details (and
#: how its reader writes money: ``m``).
ACTS: dict[str, Callable[[str, dict[str, Any], Money], str]] = {
    "Product.Registered": lambda s, d, m: f"registered {s} “{d['name']}” at {m(d['price'])}",
    "Product.Renamed": lambda s, d, m: f"renamed {s} to “{d['name']}”",
    "Product.Repriced": lambda s, d, m: (
        f"repriced {s} from {m(d['from'])} to {m(d['to'])}" if d.get("from")
        else f"repriced {s} to {m(d['to'])}"
    ),
    "Product.Restocked": lambda s, d, m: f"restocked {s} with {d['quantity']}",
    "Order.Placed": lambda s, d, m: f"placed order {s} for {m(d['total'])}",
    "Order.Cancelled": lambda s, d, m: (
        f"cancelled order {s}: {d['reason']}" if d.get("reason") else f"cancelled order {s}"
    ),
    "Shipment.Created": lambda s, d, m: (
        f"created the shipment of order {s} with {d['carrier']}"),
    "Shipment.Dispatched": lambda s, d, m: f"dispatched the shipment of order {s}",
    "Shipment.WentInTransit": lambda s, d, m: f"marked the shipment of order {s} in transit",
    "Shipment.Delivered": lambda s, d, m: f"marked the shipment of order {s} delivered",
    "Customer.Forgotten": lambda s, d, m: f"forgot the customer of {s}",
}

#: The event types the activity log holds (the API's ``type`` filter takes these).
TYPES = tuple(ACTS)


def actor_name(kind: str, username: str | None) -> str:
    """Who, as a sentence's subject: a username, the shop itself, or a forgotten one."""
    if kind == "system":
        return "the shop"
    if username is None:
        return "a forgotten customer"
    return username


def sentence(row: Activity, money: Money = str) -> str:
    """The row as a sentence; ``money`` writes its amounts (the API keeps the decimal
    strings, the back office writes them in the shop's currency)."""
    act = ACTS.get(row.type)
    what = act(row.subject, row.details, money) if act else f"{row.type} on {row.subject}"
    way = WAYS_IN.get(row.via)
    return f"{actor_name(row.actor_kind, row.actor_username)} {what}" + (
        f" ({way})" if way else "")
