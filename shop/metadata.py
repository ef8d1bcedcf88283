"""Who did what, from where: the metadata stored with every event.

Domain events say what happened; their metadata says who did it and why, the way
Marten, Kurrent and Axon keep it beside each event:

- ``actor``: ``{kind: customer|staff|system, user_id, username}``;
- ``via``: the way in: ``api``, ``admin``, ``command`` (a management command), ``beat``
  (a scheduled task), ``unknown`` (events written before metadata existed);
- ``request_id``: the request's ``X-Request-ID`` (or the id the shop gave it);
- ``causation_id``: what caused the event: the request for a command's own events;
  another event (``"<aggregate id>:<version>"``) for the events a command appends as
  its consequence (the order's ``Delivered`` is caused by the shipment's).

A command's unit of work carries a ``Context`` (actor, via, request id) and stamps each
event it commits (``Context.stamp``); the event store's mapper stores the metadata
with the event and reads it back (``shop.eventstore.ShopMapper``), so the domain events
themselves carry no such fields.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

KINDS = ("customer", "staff", "system")
WAYS_IN = ("api", "admin", "command", "beat", "unknown")


@dataclass(frozen=True)
class Actor:
    kind: str = "system"
    user_id: int | None = None
    username: str | None = None

    @classmethod
    def of(cls, user: Any) -> Actor:
        """The actor for a Django user (anonymous or none: the system)."""
        if user is None or not getattr(user, "is_authenticated", False):
            return cls()
        return cls("staff" if user.is_staff else "customer", user.pk, user.get_username())


@dataclass(frozen=True)
class Metadata:
    actor: Actor = field(default_factory=Actor)
    via: str = "unknown"
    request_id: str | None = None
    causation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Written out: ``dataclasses.asdict`` deep-copies recursively, per event.
        actor = self.actor
        return {"actor": {"kind": actor.kind, "user_id": actor.user_id,
                          "username": actor.username},
                "via": self.via, "request_id": self.request_id,
                "causation_id": self.causation_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metadata:
        return cls(Actor(**data.get("actor") or {}), data.get("via") or "unknown",
                   data.get("request_id"), data.get("causation_id"))


#: Events stored before metadata existed read as the system's, by an unknown way in.
LEGACY = Metadata()


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Context:
    """Who runs a command, how, and for which request."""

    actor: Actor = field(default_factory=Actor)
    via: str = "unknown"
    request_id: str = field(default_factory=new_request_id)

    @classmethod
    def for_task(cls, task_request: Any) -> Context:
        """The context of a Celery task's command: the system, via ``beat`` when beat's
        schedule sent it (its entries carry the header), with the request id the
        sender passed in the headers, if any."""
        headers = {**(getattr(task_request, "headers", None) or {})}
        for name in ("via", "request_id"):
            if getattr(task_request, name, None):
                headers[name] = getattr(task_request, name)
        return cls(Actor(), headers.get("via") or "unknown",
                   headers.get("request_id") or new_request_id())

    def stamp(self, events: list[Any], primary_id: Any) -> list[Metadata]:
        """Each event's metadata: the primary aggregate's events are caused by the
        request; the others' by the primary's last new event (an order's reservations
        by its ``Placed``, an order's ``Delivered`` by the shipment's)."""
        own = [e for e in events if e.originator_id == primary_id]
        cause = event_id(own[-1]) if own else None
        return [
            Metadata(self.actor, self.via, self.request_id,
                     self.request_id if event.originator_id == primary_id or cause is None
                     else cause)
            for event in events
        ]


def event_id(event: Any) -> str:
    """How metadata names an event (a ``causation_id``)."""
    return f"{event.originator_id}:{event.originator_version}"
