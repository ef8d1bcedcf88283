"""Idempotency keys: a command sent with an ``Idempotency-Key`` runs once per user and
key; a repeat within ``TTL`` gets the first outcome back, byte for byte.

Records live in their own table beside the event log (``shop_idempotency``, created by
the recorder in the event store's database, see ``shop/recorder.py``), never in the
log, which stays append-only. A command's record is written in the same transaction as
its events (the unit of work's commit), so there is no moment where the events exist
without the record or the other way round; its primary key (user, key) turns a second
run of the key into a failed commit, which appends nothing and replays the first.

What is recorded follows what payment APIs do:

- a command that ran: its ``Saved`` (aggregate id, version, extra values) and the
  notification ids it appended; the replay renders the same answer from them;
- a command that ran and was refused by a rule (409 ``insufficient_stock``,
  ``invalid_state``, 404, 412, ...): its status and body;
- never a request that failed validation before the command ran (400), nor a
  transient answer (``ApplicationError.transient``: a lost race, a lock timeout, a key
  in use, 429, any 5xx): a retry with the same key runs again.

A user holds at most ``IDEMPOTENCY_MAX_LIVE_KEYS`` live records (past it: 429
``throttled``), and a refusal's stored body is at most ``MAX_BODY_BYTES``.

On PostgreSQL, runs of one key queue on an advisory lock (the first lock of the unit
of work, before any aggregate's), so a duplicate in flight waits for the first and
replays it; waiting longer than the unit of work's lock wait is 409
``idempotency_key_in_use``. Expiry is a rule on reading: an older record counts as
absent; the next run of its key replaces it, and the cleanup on beat deletes the rest
through the index on ``created_at``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from django.conf import settings
from eventsourcing.domain import DomainEvent

from shop.errors import ApplicationError, Conflict
from shop.eventstore import Saved, get_app
from shop.recorder import NewRecord, RecordLookup, StoredRecord

logger = logging.getLogger(__name__)

NAMESPACE = uuid5(NAMESPACE_URL, "https://shop.example/idempotency")
TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
MAX_BODY_BYTES = 4096


class IdempotencyRecorded(DomainEvent):
    """Records of an earlier release, kept in the log as events. Events are forever:
    a log written then still holds them (nothing reads them any more)."""

    fingerprint: str
    status: int
    body: Any


class KeyReused(ApplicationError):
    code = "idempotency_key_reused"
    status = 422
    default_detail = (
        "This Idempotency-Key was already used for another request (another path or "
        "body). Use a new key for a new command."
    )


class KeyInUse(Conflict):
    code = "idempotency_key_in_use"
    default_detail = (
        "A request with this Idempotency-Key is still running; retry shortly to get "
        "its outcome."
    )
    retry_after = 1
    transient = True


class TooManyKeys(ApplicationError):
    code = "throttled"
    status = 429
    default_detail = (
        "You hold too many Idempotency-Keys used in the last 24 hours; send this command "
        "without a key, or retry later."
    )
    retry_after = 60
    transient = True


class InvalidKey(ApplicationError):
    code = "invalid"
    status = 400
    default_detail = "Idempotency-Key must be 1-255 printable ASCII characters."

    def __init__(self) -> None:
        super().__init__(errors={"Idempotency-Key": [self.default_detail]})


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise InvalidKey()
    return key


def record_id(user_id: int, key: str) -> UUID:
    return uuid5(NAMESPACE, f"{user_id}:{key}")


def fingerprint(method: str, path: str, body: bytes) -> str:
    return f"{method} {path} {hashlib.sha256(body).hexdigest()}"


@dataclass(frozen=True)
class Record:
    """A live record: the first outcome of a user's key."""

    stored: StoredRecord

    def outcome(self, success: Any) -> tuple[int, Any]:
        """The status and body first answered; ``success(saved)`` renders a command
        that ran, as it did the first time."""
        body = json.loads(self.stored.body)
        if self.stored.status is not None:
            return self.stored.status, body
        positions = self.stored.positions
        return success(Saved(UUID(body["aggregate_id"]), body["version"], positions[-1],
                             body["extra"], positions))


class Answered(Exception):  # noqa: N818 - an outcome, not a failure
    """A run of this key was recorded while this one waited: replay ``record``."""

    def __init__(self, record: Record) -> None:
        super().__init__("answered already")
        self.record = record


@dataclass(frozen=True)
class Claim:
    """A command run under a user's ``Idempotency-Key``."""

    user_id: int
    key: str
    fingerprint: str

    @property
    def record_id(self) -> UUID:
        """The record's id, which the runs of this key also queue on (a writer lock,
        like an aggregate's)."""
        return record_id(self.user_id, self.key)

    def check(self, found: RecordLookup) -> Record | None:
        """The live record to replay, if any; a record of another request is 422, and
        a new key past the user's cap is 429."""
        if found.record is not None:
            if found.record.fingerprint != self.fingerprint:
                raise KeyReused()
            return Record(found.record)
        if found.live_records >= max_live_keys():
            raise TooManyKeys()
        return None

    def lookup(self) -> Record | None:
        """:meth:`check` against the store, outside any transaction: a committed record
        is final, so a repeat of a finished command replays without waiting."""
        return self.check(get_app().recorder.find_record(
            self.record_id, self.user_id, TTL, max_live_keys()))

    def ran(self, saved: Saved) -> NewRecord:
        """The record of a command that ran (``saved.positions`` are filled in by the
        insert when it appended events)."""
        body = {"aggregate_id": str(saved.aggregate_id), "version": saved.version,
                "extra": saved.extra}
        return NewRecord(self.record_id, self.user_id, self.fingerprint, None,
                         json.dumps(body, default=str), saved.positions)

    def refused(self, error: ApplicationError) -> NewRecord | None:
        """The record of a refusal, or None when it is not to be recorded (see the
        module: validation errors and transient answers never are)."""
        if error.transient or error.status == 400 or error.status >= 500:
            return None
        body = json.dumps(error.body(), default=str)
        if len(body.encode()) > MAX_BODY_BYTES:
            return None  # the refusal appended nothing: a retry may run it again
        return NewRecord(self.record_id, self.user_id, self.fingerprint, error.status, body)


def max_live_keys() -> int:
    return settings.IDEMPOTENCY_MAX_LIVE_KEYS


def delete_expired(*, batch: int = 1000, max_batches: int = 100) -> int:
    """Delete records older than ``TTL`` in batches (through the index on
    ``created_at``); returns how many. Runs on Celery beat."""
    recorder = get_app().recorder
    deleted = 0
    for _ in range(max_batches):
        count = recorder.delete_expired_records(TTL, batch)
        deleted += count
        if count < batch:
            break
    if deleted:
        logger.info("Deleted %d expired idempotency records.", deleted)
    return deleted
