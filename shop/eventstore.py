"""The event store: one eventsourcing ``Application`` for the whole shop.

One application means one notification log with one total order, and a command that
changes several aggregates (an order and the products it reserves) saves them all in
one atomic ``save()``. It is built lazily, from Django's own database settings so that
tests pointed at the test database write events there too, and rebuilt after a fork
(Celery prefork, gunicorn) so that no connection pool is shared between processes.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import select
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import psycopg
import psycopg_pool
import tenacity
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment, retry, strtobool

from shop.errors import ConcurrentUpdate, NotFound, PreconditionFailed
from shop.recorder import ShopRecorder

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=Aggregate)


class ShopApplication(Application):
    name = "shop"
    # Filled by the modules that own the aggregates (see ``snapshot_every``).
    snapshotting_intervals: ClassVar[dict[type[Aggregate], int]] = {}

    def _take_snapshots(self, processing_event: Any) -> None:
        # The events are committed by now; a failed snapshot must not turn an
        # accepted command into an error. The next interval takes another one.
        try:
            self._snapshot_saved(processing_event)
        except Exception:
            logger.exception("Taking a snapshot failed; the events were saved.")

    def _snapshot_saved(self, processing_event: Any) -> None:
        """The library's ``_take_snapshots``, but from the aggregate just saved when it
        is at the snapshot's version: the library reloads it from the store instead
        (the last snapshot and up to ``interval`` events, decoded and replayed), which
        was most of the cost of a busy product's every 50th order."""
        if not (self.snapshots and self.snapshotting_intervals):
            return
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if aggregate is None or interval is None or event.originator_version % interval:
                continue
            if aggregate.version == event.originator_version:
                snapshot_class = getattr(type(aggregate), "Snapshot", self.snapshot_class)
                self.snapshots.put([snapshot_class.take(aggregate)])
            else:  # a later event of the same save moved it on: rebuild that version
                self.take_snapshot(event.originator_id, version=event.originator_version)


def snapshot_every(aggregate_class: type[Aggregate], interval: int) -> None:
    """Snapshot ``aggregate_class`` every ``interval`` versions.

    Called by the module owning the aggregate, in its ``AppConfig.ready()``: before
    the application is built, which reads the intervals.
    """
    ShopApplication.snapshotting_intervals[aggregate_class] = interval


# Sent once per command, after its transaction commits, with ``position`` (the
# notification id of the last event appended). The projections connect to it in
# their ``AppConfig.ready()``; the kernel does not know who listens.
events_saved = Signal()


def event_store_env() -> dict[str, str]:
    """The event store's environment, derived from Django's default database."""
    db = settings.DATABASES["default"]
    env: dict[str, str] = {}
    if db["ENGINE"] == "django.db.backends.postgresql":
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=str(db["NAME"]),
            POSTGRES_HOST=str(db.get("HOST") or "127.0.0.1"),
            POSTGRES_PORT=str(db.get("PORT") or "5432"),
            POSTGRES_USER=str(db.get("USER") or "postgres"),
            POSTGRES_PASSWORD=str(db.get("PASSWORD") or ""),
            # Never insert through the DB function: it skips the table lock that
            # makes notification ids commit in order (see ARCHITECTURE.md, rule 6).
            POSTGRES_ENABLE_DB_FUNCTIONS="no",
            # The library's recorder with a command's insert in one round trip.
            APPLICATION_RECORDER_TOPIC="shop.recorder:ShopRecorder",
        )
        defaults = {
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "20",
            # No ping per borrowed connection (it was 3 of an order's ~12 round trips):
            # the pool checks each connection without a round trip instead (see
            # ``connection_alive``). "yes" brings the library's ping back.
            "POSTGRES_PRE_PING": "no",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        }
    elif db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            dbname = ":memory:"
        else:
            dbname = str(Path(name).with_suffix(".events.sqlite3"))
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=dbname)
        defaults = {"SQLITE_LOCK_TIMEOUT": "20"}
    else:  # pragma: no cover - configuration error
        raise RuntimeError(f"Unsupported database engine for the event store: {db['ENGINE']}")
    # Keep recently used aggregates in memory and fast-forward them with the events
    # saved since (one small query), instead of replaying snapshot + events per command.
    defaults["AGGREGATE_CACHE_MAXSIZE"] = "1000"
    defaults["AGGREGATE_CACHE_FASTFORWARD"] = "y"
    for key, value in defaults.items():
        env[key] = os.environ.get(key, value)
    return env


class UnsafeEventStore(ImproperlyConfigured):
    """The event store would insert events without the lock that orders them."""


UNSAFE_DB_FUNCTIONS = (
    "The event store would insert events through PostgreSQL DB functions "
    "(POSTGRES_ENABLE_DB_FUNCTIONS is on, e.g. SHOP_POSTGRES_ENABLE_DB_FUNCTIONS=yes in "
    "the environment: the library reads the prefixed name first). Those inserts skip "
    "the table lock that makes notification ids commit in order, so a projection could "
    "skip an event for good. Unset SHOP_POSTGRES_ENABLE_DB_FUNCTIONS and "
    "POSTGRES_ENABLE_DB_FUNCTIONS (see ARCHITECTURE.md, rule 6)."
)


def db_functions_enabled() -> bool:
    """Whether the recorder would use DB functions, read as the library reads it.

    The library builds its environment from ``os.environ`` plus ours and looks up
    ``SHOP_<KEY>`` before ``<KEY>``; this answers without connecting.
    """
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return False
    env = Environment(ShopApplication.name, {**os.environ, **event_store_env()})
    return strtobool(env.get("POSTGRES_ENABLE_DB_FUNCTIONS") or "no")


def refuse_unsafe(app: ShopApplication) -> None:
    """Refuse (and close) an application whose recorder inserts through DB functions."""
    datastore = getattr(app.recorder, "datastore", None)
    if getattr(datastore, "enable_db_functions", False):
        app.close()
        raise UnsafeEventStore(UNSAFE_DB_FUNCTIONS)


_lock = threading.Lock()
_app: ShopApplication | None = None
_app_pid: int | None = None


def get_app() -> ShopApplication:
    """The process's event store application, built on first use."""
    global _app, _app_pid
    if _app is None or _app_pid != os.getpid():
        with _lock:
            if _app is None or _app_pid != os.getpid():
                if db_functions_enabled():  # before building creates the DB function
                    raise UnsafeEventStore(UNSAFE_DB_FUNCTIONS)
                app = _build_app()
                refuse_unsafe(app)  # what the recorder actually does, however configured
                _app, _app_pid = app, os.getpid()
    return _app


@tenacity.retry(
    retry=tenacity.retry_if_exception_type(PersistenceError),
    stop=tenacity.stop_after_attempt(5),
    wait=tenacity.wait_random(0.01, 0.1),
    before_sleep=tenacity.before_sleep_log(logger, logging.WARNING),
    reraise=True,
)
def _build_app() -> ShopApplication:
    # Building the application creates the event tables if missing (CREATE ... IF NOT
    # EXISTS). Processes starting together (a prefork pool's children, gunicorn's
    # workers) can collide in PostgreSQL's catalog ("tuple concurrently updated",
    # a duplicate type): the loser retries and then finds the tables there.
    app = ShopApplication(env=event_store_env())
    datastore = getattr(app.recorder, "datastore", None)
    if isinstance(datastore, PostgresDatastore) and not datastore.pre_ping:
        _check_without_round_trip(datastore.pool)
    return app


def connection_alive(conn: psycopg.Connection, pool: psycopg_pool.ConnectionPool | None) -> None:
    """The event store pool's check of a connection it lends: no round trip as a rule.

    An idle connection has nothing to read. A session the server ended (a restart,
    ``pg_terminate_backend``, an idle timeout) has sent its error and closed the
    socket, so the socket is readable: only then does a real ping decide. A dead one
    means the others likely died with it (a restart ends every session), so the whole
    pool is checked at once before the pool lends another: psycopg_pool would
    otherwise back off for 1, 2, 4 s between dead connections. The library's pre-ping
    instead cost a round trip per loan (3 of an order's ~12). Without any check, after
    every session was terminated the pool held more dead connections than the
    recorder's 10 retries, so commands failed after the outage
    (tests/integration/test_eventstore.py, tests/reliability).
    """
    if not (conn.closed or conn.broken):
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return
        try:
            psycopg_pool.ConnectionPool.check_connection(conn)
            return
        except psycopg.Error:
            pass
    if pool is not None:
        pool.check()  # discards every dead idle connection and replaces it
    raise psycopg.OperationalError("the server ended this connection")


def _check_without_round_trip(pool: psycopg_pool.ConnectionPool) -> None:
    """Make ``connection_alive`` the pool's check (psycopg_pool's ``check`` callback)."""
    pool_ref = weakref.ref(pool)  # no cycle through the pool's own attribute

    def check(conn: psycopg.Connection) -> None:
        connection_alive(conn, pool_ref())

    pool._check = check


def reset_app() -> None:
    """Close and forget the application (tests repoint it at another database)."""
    global _app, _app_pid
    with _lock:
        if _app is not None and _app_pid == os.getpid():
            _app.close()
        _app, _app_pid = None, None


def _forget_after_fork() -> None:
    # The child must not use (or close) the parent's pool; it builds its own.
    global _app, _app_pid
    _app, _app_pid = None, None


os.register_at_fork(after_in_child=_forget_after_fork)
# Close the pool before the interpreter tears modules down (else its finaliser fails
# noisily at exit, e.g. after every management command).
atexit.register(reset_app)


@dataclass(frozen=True)
class Saved:
    """What a command returns: the touched aggregate, its version, the log position,
    and any further values its answer carries (an order's ``total``)."""

    aggregate_id: UUID
    version: int
    position: int
    extra: dict[str, Any] = field(default_factory=dict)


class SideRecord:
    """Something a command records beside its events, in the same atomic save
    (ARCHITECTURE.md rule 11): an idempotency key with the command's outcome.

    ``events(saved)`` is asked at each save attempt with what the command is about to
    answer (``position`` not yet known); ``recorded(position)`` is told once the save
    committed.
    """

    def events(self, saved: Saved) -> Sequence[DomainEvent]:  # pragma: no cover
        raise NotImplementedError

    def recorded(self, position: int) -> None:  # pragma: no cover
        raise NotImplementedError


_side_record: ContextVar[SideRecord | None] = ContextVar("side_record", default=None)
_precondition: ContextVar[tuple[UUID, int] | None] = ContextVar("precondition", default=None)


@contextmanager
def recording_beside(record: SideRecord) -> Iterator[None]:
    """Within this block, every ``save()`` also saves ``record``'s events, atomically."""
    token = _side_record.set(record)
    try:
        yield
    finally:
        _side_record.reset(token)


@contextmanager
def precondition(aggregate_id: UUID | None, version: int | None) -> Iterator[None]:
    """Within this block, loading ``aggregate_id`` at another version than ``version``
    raises ``PreconditionFailed`` (If-Match; a stale admin form)."""
    if aggregate_id is None or version is None:
        yield
        return
    token = _precondition.set((aggregate_id, version))
    try:
        yield
    finally:
        _precondition.reset(token)


def save(
    *aggregates: Aggregate, primary: Aggregate | None = None, extra: dict[str, Any] | None = None
) -> Saved:
    """Save aggregates in one atomic write and trigger the projections.

    Returns the primary aggregate's (default: the first's) id and new version, and the
    notification id of the last event appended. A command that changed nothing appends
    nothing and answers the aggregate's current version with the position of its
    latest event (reading at that position shows the aggregate as it is). A side record
    (see :class:`SideRecord`) is saved after the command's events in the same write,
    so it is the last event appended.
    """
    target = primary or aggregates[0]
    extra = extra or {}
    side = _side_record.get()
    side_events = list(side.events(Saved(target.id, target.version, 0, extra))) if side else []
    if not side_events and not any(a.pending_events for a in aggregates):
        # The position of the version answered, not of the stream's latest event:
        # another process may have appended to it since this one loaded it.
        last = last_recorded(target.id, up_to_version=target.version)
        return Saved(target.id, target.version, last[1] if last else head_position(), extra)
    recordings = get_app().save(*aggregates, *side_events)
    position = max(r.notification.id for r in recordings)
    if side is not None:
        side.recorded(position)
    # robust: the events are durable by now; a failing receiver (broker down, a
    # projection error) is logged and must not turn an accepted command into a 500.
    transaction.on_commit(
        functools.partial(events_saved.send, sender=ShopApplication, position=position),
        robust=True,
    )
    return Saved(aggregate_id=target.id, version=target.version, position=position, extra=extra)


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its per-event
    ``assert isinstance(event, CanMutateProtocol)``: a runtime-checkable Protocol check
    that took 2-3 % of a gunicorn worker's CPU under a stream of orders (Python 3.11).
    Every event here is the library's ``DomainEvent``, which has ``mutate``."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def load(aggregate_id: UUID, cls: type[A], *, what: str | None = None) -> A:
    """Load an aggregate of the given type, or raise ``NotFound``."""
    try:
        aggregate = get_app().repository.get(aggregate_id, projector_func=_project)
    except AggregateNotFoundError:
        aggregate = None
    if not isinstance(aggregate, cls):
        raise NotFound(f"{what or cls.__name__} {aggregate_id} was not found.")
    expected = _precondition.get()
    if expected is not None and expected[0] == aggregate_id and expected[1] != aggregate.version:
        raise PreconditionFailed(
            f"{what or cls.__name__} {aggregate_id} changed since you read it: it is at "
            f"version {aggregate.version}, not {expected[1]}. Nothing was saved; reload "
            "it and try again."
        )
    return aggregate


# How long a writer waits for another writer of the same aggregates (an advisory lock).
LOCK_WAIT_SECONDS = 10


@contextmanager
def exclusive(*aggregate_ids: UUID) -> Iterator[None]:
    """Serialize the writers of these aggregates, across processes, from before they
    load them until their save commits.

    Why: a hot product (a flash sale) has many writers at once. Optimistic retries let
    every writer load, decide and try to save, and all but one lose and start over:
    CPU spent for nothing, and after enough lost races a 409 concurrent_update. Here
    writers queue instead: on PostgreSQL each takes a transaction-level advisory lock
    per aggregate id, in sorted order (no deadlock between two orders sharing
    products), on a connection of the event store's pool; the next writer then loads
    (the cached aggregate fast-forwarded by one small query) a state no one else is
    changing, so its save does not conflict. The block's save runs on that same
    connection (``shop.recorder``): the events commit and the locks end together, in
    the save's one round trip, and taking the locks costs one more. A block that saves
    nothing lets go on leaving. The event store's insert already takes a table lock,
    so this adds no serialization on the log, only on the product. Within an
    enclosing ``exclusive()`` block it adds its locks to that block's. SQLite (the
    embedded default) has one writer at a time anyway: there it is a no-op and the
    optimistic retry remains.
    """
    recorder = get_app().recorder if aggregate_ids else None
    if not isinstance(recorder, ShopRecorder):
        yield
        return
    keys = sorted({_lock_key(aggregate_id) for aggregate_id in aggregate_ids})
    with recorder.holding() as holder:
        try:
            holder.lock(keys, LOCK_WAIT_SECONDS)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
                raise LockWaitTimeout() from exc
            raise
        yield


class LockWaitTimeout(ConcurrentUpdate):
    """Another writer held the aggregates for longer than ``LOCK_WAIT_SECONDS``."""

    default_detail = "Another change to the same data took too long; try again."


def _lock_key(aggregate_id: UUID) -> int:
    # A signed 64-bit key from the id's first 8 bytes; a collision only makes two
    # aggregates share a queue.
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


# Re-run a command when another writer saved the same aggregate first. Each attempt
# reloads the aggregates, so the rules are checked again against the state that won.
# After 30 lost races the IntegrityError propagates: the API answers 409
# concurrent_update, the admin says so. Random waits growing to 20 ms spread out
# writers that collided.
retry_on_conflict = tenacity.retry(
    retry=tenacity.retry_if_exception_type(IntegrityError),
    stop=tenacity.stop_after_attempt(30),
    wait=tenacity.wait_random_exponential(multiplier=0.001, max=0.02),
    reraise=True,
)


# Retried on a dead connection, as the recorder's own reads are.
@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
def last_recorded(
    stream_id: UUID, *, up_to_version: int | None = None
) -> tuple[StoredEvent, int] | None:
    """A stream's last stored event (or its last up to ``up_to_version``) and its
    notification id (the log position), read from the recorder (never the aggregate
    cache: another process may have written it).
    """
    recorder = get_app().recorder
    table = recorder.events_table_name
    bound = up_to_version if up_to_version is not None else 2**31 - 1
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_version, topic, state, notification_id FROM {}.{} "
            "WHERE originator_id = %s AND originator_version <= %s "
            "ORDER BY originator_version DESC LIMIT 1"
        ).format(Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [stream_id, bound], prepare=True)
            found = cursor.fetchone()
        if found is None:
            return None
        version, topic, state, position = (
            found["originator_version"], found["topic"], found["state"],
            found["notification_id"],
        )
    else:  # SQLite: the notification id is the rowid
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT originator_version, topic, state, rowid FROM {table} "  # noqa: S608
                "WHERE originator_id = ? AND originator_version <= ? "
                "ORDER BY originator_version DESC LIMIT 1",
                (stream_id.hex, bound),
            )
            found = cursor.fetchone()
        if found is None:
            return None
        version, topic, state, position = found[0], found[1], found[2], found[3]
    stored = StoredEvent(originator_id=stream_id, originator_version=version, topic=topic,
                         state=bytes(state))
    return stored, position


def head_position() -> int:
    """The notification id of the last event in the log (0 when empty)."""
    return get_app().recorder.max_notification_id() or 0
