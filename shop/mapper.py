"""The event store's mapper: the library's, with two more steps on the way in and out.

- **Metadata.** Each event is stored with its metadata (``shop.metadata``: actor, way
  in, request id, causation id) under the state's ``_meta`` key, and read back beside
  the event (``decode``), never as a field of the domain event. Rows stored before
  metadata existed have none: the metadata's upcaster reads them as the system's, by
  an unknown way in (``shop.metadata.LEGACY``).
- **Personal data.** The fields a class marks personal (``shop.personal_data``) are
  sealed with their person's data key before the state is encoded, and opened after
  it is decoded, before the library's upcasters run: aggregates, upcasters and
  projectors see plain values, or ``None`` once the person is forgotten. An
  aggregate's marking covers its snapshots; a customer's username in the metadata is
  theirs too.

``to_stored_event`` and ``to_domain_event`` keep the library's signatures (its
repository and notification log call them) and its steps (transcoder, compressor,
cipher, upcasting), written out here because the two new steps sit between them.
Keys come from the ``KeyRing`` passed in (a unit of work's, a projection batch's), or
from a ring of their own per call.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any, cast

from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from shop.metadata import LEGACY, Metadata
from shop.personal_data import (
    KeyRing,
    KeyStore,
    Personal,
    is_sealed,
    personal_data,
    seal,
    seal_fields,
    unseal,
    unseal_fields,
)

META = "_meta"
#: The metadata of an event written by a path that gives none (the library's own).
UNKNOWN = Metadata()


class ShopMapper(Mapper):
    #: Set by the application once its recorder exists (see ``ShopApplication``).
    key_store: KeyStore | None = None

    def key_ring(self) -> KeyRing:
        assert self.key_store is not None, "the application sets the mapper's key store"
        return KeyRing(self.key_store)

    # -- in

    def to_stored_event(self, domain_event: Any, metadata: Metadata | None = None,
                        keys: KeyRing | None = None) -> StoredEvent:
        topic = get_topic(type(domain_event))
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        ring = keys
        personal, where = _personal_part(type(domain_event), state)
        if personal is not None:
            ring = ring or self.key_ring()
            where = dict(where)  # a copy: the event (or the snapshot's state) stays plain
            seal_fields(where, personal, ring.for_writing)
            _put_personal_part(type(domain_event), state, where)
        if not isinstance(domain_event, CanSnapshotAggregate):
            meta = (metadata or UNKNOWN).as_dict()
            actor = meta["actor"]
            if actor["kind"] == "customer" and actor["username"] is not None:
                ring = ring or self.key_ring()
                actor["username"] = seal(actor["username"],
                                         ring.for_writing(actor["user_id"]), actor["user_id"])
            state[META] = meta
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id=originator_id, originator_version=originator_version,
                           topic=topic, state=stored_state)

    # -- out

    def to_domain_event(self, stored_event: StoredEvent, keys: KeyRing | None = None) -> Any:
        """The event alone: its metadata is not opened (an aggregate's fast-forward
        needs no one's key for the actors' names of the events it applies)."""
        return self.decode_many([stored_event], keys, metadata=False)[0][0]

    def decode(self, stored_event: StoredEvent,
               keys: KeyRing | None = None) -> tuple[Any, Metadata]:
        """The event and its metadata."""
        return self.decode_many([stored_event], keys)[0]

    def decode_many(self, stored_events: Sequence[StoredEvent],
                    keys: KeyRing | None = None, *,
                    metadata: bool = True) -> list[tuple[Any, Metadata]]:
        """Events and their metadata, the keys of every person in them read at once
        (a projection's batch: one query, not one per event). ``metadata=False``:
        the metadata is not opened (a customer's name in it stays sealed), so no key
        is read for it."""
        opened = [self._open(stored) for stored in stored_events]
        subjects = [subject for cls, state, meta in opened
                    for subject in _subjects(cls, state, meta, metadata)]
        ring = keys
        if subjects:
            ring = ring or self.key_ring()
            ring.prefetch(subjects)
        return [self._finish(stored, cls, state, meta, ring, metadata)
                for stored, (cls, state, meta) in zip(stored_events, opened, strict=True)]

    def _open(self, stored_event: StoredEvent) -> tuple[type, dict[str, Any], Metadata]:
        cls = resolve_topic(stored_event.topic)
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            state: dict[str, Any] = self.transcoder.decode(stored_state)
        except Exception as exc:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic "
                f"'{stored_event.topic}', originator_id '{stored_event.originator_id}' and "
                f"originator_version {stored_event.originator_version}: {exc}"
            ) from exc
        return cls, state, upcast_metadata(state.pop(META, None))

    def _finish(self, stored_event: StoredEvent, cls: type, state: dict[str, Any],
                metadata: Metadata, ring: KeyRing | None,
                open_metadata: bool = True) -> tuple[Any, Metadata]:
        actor = metadata.actor
        if open_metadata and actor.kind == "customer" and is_sealed(actor.username):
            ring = ring or self.key_ring()
            username = unseal(actor.username, ring.for_reading(actor.user_id), actor.user_id)
            metadata = replace(metadata, actor=replace(actor, username=username))
        personal, where = _personal_part(cls, state)
        if personal is not None:
            ring = ring or self.key_ring()
            unseal_fields(where, personal, ring.for_reading)
        id_convertor = find_id_convertor(cls, cast(Hashable, type(stored_event.originator_id)))
        state["originator_id"] = id_convertor(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event, metadata


def upcast_metadata(stored: dict[str, Any] | None) -> Metadata:
    """The metadata's upcaster: a row stored before metadata existed has none."""
    return LEGACY if stored is None else Metadata.from_dict(stored)


def _subjects(cls: type, state: dict[str, Any], metadata: Metadata,
              open_metadata: bool = True) -> list[int]:
    """Whose keys opening this state (and its metadata, if asked) needs."""
    subjects = []
    if open_metadata and metadata.actor.kind == "customer" \
            and is_sealed(metadata.actor.username):
        subjects.append(metadata.actor.user_id)
    personal, where = _personal_part(cls, state)
    if personal is not None and any(is_sealed(where.get(name)) for name in personal.fields):
        subjects.append(where.get(personal.subject))
    return [subject for subject in subjects if subject is not None]


def _personal_part(cls: type, state: dict[str, Any]) -> tuple[Personal | None, dict]:
    """The marking that applies to ``state`` and the dict holding those fields: the
    event's own state, or a snapshot's aggregate state."""
    if issubclass(cls, CanSnapshotAggregate):
        aggregate_state = state.get("state")
        if not isinstance(aggregate_state, dict):
            return None, state
        return personal_data(resolve_topic(state["topic"])), aggregate_state
    return personal_data(cls), state


def _put_personal_part(cls: type, state: dict[str, Any], part: dict[str, Any]) -> None:
    if issubclass(cls, CanSnapshotAggregate):
        state["state"] = part
    else:
        state.update(part)
