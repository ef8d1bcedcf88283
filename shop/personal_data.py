"""Personal data in an append-only log: crypto-shredding.

Events are forever, and a customer's name and shipping address are in them. So the
fields that are one person's data are stored sealed (AES-GCM, from the
``cryptography`` package) with that person's own data key, and forgetting the person
destroys the key: the sealed values stay in the log and no one can read them again.

- A class declares its personal fields with ``personal_data = Personal(subject=...,
  fields=(...))``: ``subject`` names the field holding the person's user id. An
  aggregate's declaration covers its snapshots; the metadata's ``actor.username`` is
  the actor's own when the actor is a customer.
- Keys live in their own table (``shop_data_keys``) in the event store's database,
  never in the log. The event store's mapper seals and opens (``ShopMapper``), so
  aggregates and projectors see plain values; a value whose key is gone reads as
  ``None``, never an exception.
- Forgetting replaces the person's key with a tombstone: their row stays, with an
  empty key (``TOMBSTONE``), written even for a person who never had a key. Deleting
  the row would read as "no key yet": a command of theirs racing the forget (one
  authenticated before it committed) would then make a new key, so what it wrote
  would be readable again, and every value sealed with the old key would be opened
  with the new one and raise ``InvalidTag`` instead of reading ``None``. With the
  tombstone, ``make_data_key`` (insert unless a row exists, then read the row) returns
  the empty key, and no key is ever made for a forgotten person again.
- A ``KeyRing`` caches the keys it has read for its own life: one unit of work (a
  command), one projection batch. It never outlives them, so a key destroyed by
  ``forget`` is not used again by anything that starts after. It reads a tombstone as
  no key (``None``) and, for writing, gives a key thrown away, as for a person this
  unit of work forgets itself.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = "_sealed_"
NONCE_BYTES = 12
#: The key of a forgotten person in the store: empty (see the module).
TOMBSTONE = b""


@dataclass(frozen=True)
class Personal:
    """The personal fields of an event (or an aggregate's snapshot), and the field
    that holds whose they are (a user id)."""

    subject: str
    fields: tuple[str, ...]


def personal_data(cls: type) -> Personal | None:
    return getattr(cls, "personal_data", None)


class KeyStore(Protocol):
    """Where data keys live: ``shop.recorder``'s recorders and transactions. A
    forgotten person's key is ``TOMBSTONE``."""

    def data_keys(self, user_ids: list[int]) -> dict[int, bytes]: ...

    def make_data_key(self, user_id: int, key: bytes) -> bytes: ...


class KeyRing:
    """The data keys one unit of work (or one batch) uses, read once each."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.keys: dict[int, bytes | None] = {}
        self.forgotten: set[int] = set()

    def forget(self, user_id: int) -> None:
        """This person is forgotten (their key is being replaced with a tombstone, or
        was): nothing more is sealed with a key of theirs that anyone keeps (what this
        unit of work still writes about them, the metadata of their own ``Forgotten``
        included, is sealed with a key thrown away)."""
        self.forgotten.add(user_id)
        self.keys[user_id] = None

    def _keep(self, user_id: int, key: bytes | None) -> None:
        """A key as read from the store (``None``: no row); a tombstone is forgotten."""
        if key == TOMBSTONE:
            self.forget(user_id)
        else:
            self.keys[user_id] = key

    def for_reading(self, user_id: int) -> bytes | None:
        if user_id not in self.keys:
            self._keep(user_id, self.store.data_keys([user_id]).get(user_id))
        return self.keys[user_id]

    def prefetch(self, user_ids: list[int]) -> None:
        """Read the keys of many people at once (a projection batch)."""
        missing = [user_id for user_id in set(user_ids) if user_id not in self.keys]
        if missing:
            found = self.store.data_keys(missing)
            for user_id in missing:
                self._keep(user_id, found.get(user_id))

    def read(self, user_ids: list[int], found: dict[int, bytes]) -> None:
        """The keys of ``user_ids`` as just read from the store (``found``: those
        that exist), for a ring that has not read them itself (a unit of work reads
        its actor's key with its first locks, in the same round trip)."""
        for user_id in user_ids:
            if user_id not in self.keys:
                self._keep(user_id, found.get(user_id))

    def for_writing(self, user_id: int) -> bytes:
        key = self.for_reading(user_id)
        if key is None and user_id not in self.forgotten:
            # The first personal data of this person: a key of their own, unless a
            # tombstone is there already (forgotten meanwhile): then none is made.
            self._keep(user_id, self.store.make_data_key(
                user_id, AESGCM.generate_key(bit_length=256)))
            key = self.keys[user_id]
        if key is None:  # forgotten
            return AESGCM.generate_key(bit_length=256)  # never stored
        return key


def seal(value: Any, key: bytes, subject: int) -> dict[str, str]:
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(value).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, str(subject).encode())
    return {SEALED: base64.b64encode(nonce + sealed).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and SEALED in value


def unseal(value: Any, key: bytes | None, subject: int) -> Any:
    """The plain value; ``None`` once the key is gone (the person was forgotten).
    A value stored before sealing existed is returned as it is."""
    if not is_sealed(value):
        return value
    if key is None:
        return None
    raw = base64.b64decode(value[SEALED])
    nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    return json.loads(AESGCM(key).decrypt(nonce, sealed, str(subject).encode()))


def seal_fields(state: dict[str, Any], personal: Personal,
                key_for: Callable[[int], bytes]) -> None:
    """Seal ``personal``'s fields of ``state`` in place, with its subject's key."""
    subject = state.get(personal.subject)
    if subject is None:
        return
    key = key_for(subject)
    for name in personal.fields:
        if name in state and not is_sealed(state[name]):
            state[name] = seal(state[name], key, subject)


def unseal_fields(state: dict[str, Any], personal: Personal,
                  key_for: Callable[[int], bytes | None]) -> None:
    subject = state.get(personal.subject)
    if subject is None or not any(is_sealed(state.get(name)) for name in personal.fields):
        return
    key = key_for(subject)
    for name in personal.fields:
        if name in state:
            state[name] = unseal(state[name], key, subject)
