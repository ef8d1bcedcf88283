"""Idempotency records: a command run under an ``Idempotency-Key`` runs once per user
and key; a repeat gets the first outcome back.

A successful command's record is an event in the event store, saved in the same atomic
``Application.save()`` as the command's own events (ARCHITECTURE.md rule 11), so there
is no moment where the events exist without the record or the other way round:

- its stream id is ``uuid5(NAMESPACE, "<user id>:<key>")``: one stream per user and key;
- each run appends one ``IdempotencyRecorded`` event at the stream's next version,
  carrying the request's fingerprint (method, path, body hash) and the outcome
  (status and body). Two runs of one key race for the same version: the loser's whole
  save fails (``IntegrityError``), nothing of it is appended, and it replays the
  winner's outcome;
- ``position`` in a success body is the notification id of the command's last event,
  which is the record itself (saved last); a replay reads it back from the record's
  row, so the replayed body is the first one, byte for byte;
- on PostgreSQL, requests with one key also queue on an advisory lock on the stream
  id (see ``shop.eventstore.exclusive``), so a duplicate in flight waits for the
  first and replays it instead of running the command and losing the race. If the
  first takes longer than ``IN_FLIGHT_WAIT_SECONDS``: 409 ``idempotency_key_in_use``.

A rejected command (any status below 500 without events) appends nothing: the event
log stays exactly as before it (API.md), so a client sending garbage cannot grow it.
Its outcome is a row of ``shop.models.IdempotencyRejection`` (primary key: the same
stream id), written and committed inside the key's ``exclusive()`` block, while the
key's lock is held, so a duplicate in flight still waits and replays it. There are no
events for it to be atomic with. Two runs racing for the row (SQLite, which has no
lock) collide on its primary key: the loser replays the winner's.
A lookup takes the live success record, else the live rejection row, else runs.

Expiry: the store is append-only, so "expired" is a rule on reading: a record whose
last event (or a rejection row whose ``created_at``) is older than ``TTL`` counts as
absent, and the key runs again (appending at the next version, so the race protection
holds across expiry too; a new rejection replaces the row). The cleanup task
(:func:`delete_expired`, on Celery beat) then deletes expired records' rows and expired
rejection rows: they are bookkeeping about requests, not facts of the shop, no
projection reads them, and keeping them would grow the log by one row per command
forever. It deletes a stream only while holding that stream's lock and only if its
last event is still expired, so it can never race a new run of the key; a rejection
row is deleted only if its ``created_at`` is still expired (a replaced row is kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from django.db import transaction
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from shop.errors import ApplicationError, Conflict
from shop.eventstore import Saved, SideRecord, exclusive, get_app, last_recorded
from shop.models import IdempotencyRejection

logger = logging.getLogger(__name__)

NAMESPACE = uuid5(NAMESPACE_URL, "https://shop.example/idempotency")
TTL = timedelta(hours=24)
IN_FLIGHT_WAIT_SECONDS = 10
MAX_KEY_LENGTH = 255


class IdempotencyRecorded(DomainEvent):
    """A command ran under an idempotency key: what was asked, what was answered.

    ``body`` is the answer's JSON body; for a success its ``position`` is left out
    (unknown until the save) and is this event's own notification id.
    """

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
    event: IdempotencyRecorded
    position: int

    @property
    def fingerprint(self) -> str:
        return self.event.fingerprint

    def live(self, now: datetime | None = None) -> bool:
        return self.event.timestamp > (now or datetime.now(UTC)) - TTL

    def outcome(self) -> tuple[int, Any]:
        """The status and body first answered (a success's position filled in)."""
        body = self.event.body
        if isinstance(body, dict) and "position" in body:
            body = {**body, "position": self.position}
        return self.event.status, body


def last_record(stream_id: UUID) -> Record | None:
    """The stream's last record and its notification id, read from the event store
    (never from the aggregate cache: another process may have written it)."""
    app = get_app()
    row = last_recorded(stream_id)
    if row is None:
        return None
    stored, position = row
    event = app.mapper.to_domain_event(stored)
    assert isinstance(event, IdempotencyRecorded)
    return Record(event=event, position=position)


@dataclass(frozen=True)
class Rejection:
    """A rejected run's outcome, read from its ``IdempotencyRejection`` row."""

    row: IdempotencyRejection

    @property
    def fingerprint(self) -> str:
        return self.row.fingerprint

    def live(self, now: datetime | None = None) -> bool:
        return self.row.created_at > (now or datetime.now(UTC)) - TTL

    def outcome(self) -> tuple[int, Any]:
        return self.row.status, json.loads(self.row.body)


def last_rejection(stream_id: UUID) -> Rejection | None:
    row = IdempotencyRejection.objects.filter(stream_id=stream_id).first()
    return Rejection(row) if row is not None else None


def save_rejection(stream_id: UUID, fingerprint: str, status: int, body: Any,
                   replacing: Rejection | None) -> None:
    """Record a rejected run's outcome outside the event log, replacing the expired
    rejection ``replacing`` (the row read before the run) if any.

    Raises Django's ``IntegrityError`` if another run of the key recorded an outcome
    meanwhile (the row exists but is not the one read): the caller replays that one.
    """
    values = {"fingerprint": fingerprint, "status": status,
              "body": json.dumps(body, default=str), "created_at": datetime.now(UTC)}
    rows = IdempotencyRejection.objects
    with transaction.atomic():  # a collision undoes only this (a savepoint if nested)
        if replacing is not None and rows.filter(
            stream_id=stream_id, created_at=replacing.row.created_at
        ).update(**values):
            return
        rows.create(stream_id=stream_id, **values)  # the cleanup may have deleted it


class PendingRecord(SideRecord):
    """The record a successful run saves beside the command's events
    (``shop.eventstore.save`` asks for it)."""

    def __init__(self, stream_id: UUID, version: int, fingerprint: str,
                 success: Any) -> None:
        self.stream_id = stream_id
        self.version = version
        self.fingerprint = fingerprint
        self.success = success  # Saved -> (status, body): the answer the view will give
        self.position: int | None = None

    def events(self, saved: Saved) -> list[IdempotencyRecorded]:
        status, body = self.success(saved)
        return [IdempotencyRecorded(
            originator_id=self.stream_id,
            originator_version=self.version,
            timestamp=IdempotencyRecorded.create_timestamp(),
            fingerprint=self.fingerprint,
            status=status,
            body=json.loads(json.dumps(body, default=str)),
        )]

    def recorded(self, position: int) -> None:
        self.position = position


def delete_expired(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Delete the rows of records whose last event is older than ``TTL``, and the
    rejection rows older than ``TTL``; returns how many streams and rejections were
    deleted. Runs on Celery beat (``projections`` schedules it)."""
    app = get_app()
    recorder = app.recorder
    now = now or datetime.now(UTC)
    # One statement: a row a new run replaced meanwhile has a fresh created_at and stays.
    rejections, _ = IdempotencyRejection.objects.filter(created_at__lte=now - TTL).delete()
    topic = get_topic(IdempotencyRecorded)
    deleted = 0
    for stream_id in dict.fromkeys(_streams_with_topic(recorder, topic, limit)):
        with exclusive(stream_id):
            record = last_record(stream_id)
            if record is None:
                continue
            # A live record keeps only its last run (what a replay needs); an expired
            # one goes entirely.
            version = record.event.originator_version
            keep_last = record.live(now)
            if keep_last and version == 1:
                continue
            _delete_stream(recorder, stream_id, version - 1 if keep_last else version)
            deleted += 1
    if deleted or rejections:
        logger.info("Compacted %d idempotency records, deleted %d rejections.",
                    deleted, rejections)
    return deleted + rejections


def _streams_with_topic(recorder: Any, topic: str, limit: int) -> list[UUID]:
    # Oldest first (by notification id): those are the ones that may have expired.
    table = recorder.events_table_name
    if hasattr(recorder.datastore, "schema"):
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id FROM {}.{} WHERE topic = %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [topic, limit])
            return [row["originator_id"] for row in cursor.fetchall()]
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT originator_id FROM {table} WHERE topic = ? "  # noqa: S608
            "ORDER BY rowid LIMIT ?", (topic, limit),
        )
        return [UUID(row[0]) for row in cursor.fetchall()]


def _delete_stream(recorder: Any, stream_id: UUID, up_to_version: int) -> None:
    table = recorder.events_table_name
    if hasattr(recorder.datastore, "schema"):
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "DELETE FROM {}.{} WHERE originator_id = %s AND originator_version <= %s"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement, [stream_id, up_to_version])
        return
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE originator_id = ? "  # noqa: S608
            "AND originator_version <= ?", (stream_id.hex, up_to_version),
        )

