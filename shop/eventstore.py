"""The event store: one eventsourcing ``Application`` for the whole shop.

One application means one notification log with one total order, and a command that
changes several aggregates (an order and the products it reserves) saves them all in
one atomic write (its unit of work's commit, ``shop/unit_of_work.py``). It is built
lazily, from Django's own database settings so that
tests pointed at the test database write events there too, and rebuilt after a fork
(Celery prefork, gunicorn) so that no connection pool is shared between processes.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import psycopg_pool
import tenacity
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal
from eventsourcing.application import Application, LRUCache
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment, strtobool

from shop.mapper import ShopMapper
from shop.metadata import Metadata

logger = logging.getLogger(__name__)


class ShopApplication(Application):
    """The shop's event store. Commands write through a unit of work
    (``shop.unit_of_work``), which keeps recently used aggregates in
    ``aggregate_cache`` and snapshots them here after its commit."""

    name = "shop"
    # Filled by the modules that own the aggregates (see ``snapshot_every``).
    snapshotting_intervals: ClassVar[dict[type[Aggregate], int]] = {}

    def __init__(self, env: Any = None) -> None:
        super().__init__(env=env)
        # The mapper seals and opens personal fields with keys kept beside the events.
        self.mapper.key_store = self.recorder
        self.forget_cached_aggregates()

    def construct_mapper(self) -> ShopMapper:
        return self.factory.mapper(transcoder=self.construct_transcoder(),
                                   mapper_class=ShopMapper)

    def forget_cached_aggregates(self) -> None:
        # Never mutated in place: a command loads a copy and fast-forwards it.
        self.aggregate_cache: LRUCache[UUID, Aggregate] = LRUCache(
            maxsize=int(self.env.get("COMMAND_AGGREGATE_CACHE_SIZE") or 1000))

    def snapshot_saved(self, aggregates: list[Aggregate], saved_versions: list[tuple]) -> None:
        """Snapshot the aggregates just committed that crossed their interval, from the
        aggregate itself when it is at that version (reloading it from the store, as
        the library does, was most of the cost of a busy product's every 50th order).
        ``saved_versions``: ``(aggregate_id, version)`` of each event appended.

        The events are committed by now: a failed snapshot must not turn an accepted
        command into an error; the next interval takes another one."""
        if not (self.snapshots and self.snapshotting_intervals):
            return
        by_id = {aggregate.id: aggregate for aggregate in aggregates}
        try:
            for aggregate_id, version in saved_versions:
                aggregate = by_id[aggregate_id]
                interval = self.snapshotting_intervals.get(type(aggregate))
                if interval is None or version % interval:
                    continue
                if aggregate.version == version:
                    snapshot_class = getattr(type(aggregate), "Snapshot", self.snapshot_class)
                    self.snapshots.put([snapshot_class.take(aggregate)])
                else:  # a later event of the same save moved it on: rebuild that version
                    self.take_snapshot(aggregate_id, version=version)
        except Exception:
            logger.exception("Taking a snapshot failed; the events were saved.")


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
            # Never insert through the DB function: it skips the insert lock that
            # makes notification ids commit in order (see ARCHITECTURE.md, rule 6).
            POSTGRES_ENABLE_DB_FUNCTIONS="no",
            # The library's recorder, append-only to the letter, with the side tables.
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
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=dbname,
                   APPLICATION_RECORDER_TOPIC="shop.recorder:ShopSQLiteRecorder")
        defaults = {"SQLITE_LOCK_TIMEOUT": "20"}
    else:  # pragma: no cover - configuration error
        raise RuntimeError(f"Unsupported database engine for the event store: {db['ENGINE']}")
    # Commands keep recently used aggregates in memory and fast-forward them with the
    # events saved since (one small query), instead of replaying snapshot + events.
    defaults["COMMAND_AGGREGATE_CACHE_SIZE"] = "1000"
    for key, value in defaults.items():
        env[key] = os.environ.get(key, value)
    return env


class UnsafeEventStore(ImproperlyConfigured):
    """The event store would insert events without the lock that orders them."""


UNSAFE_DB_FUNCTIONS = (
    "The event store would insert events through PostgreSQL DB functions "
    "(POSTGRES_ENABLE_DB_FUNCTIONS is on, e.g. SHOP_POSTGRES_ENABLE_DB_FUNCTIONS=yes in "
    "the environment: the library reads the prefixed name first). Those inserts skip "
    "the insert lock that makes notification ids commit in order, so a projection could "
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
    any further values its answer carries (an order's ``total``), and the notification
    ids the command appended, in order (``position`` is the last; a command that
    changed nothing appended none and answers the position of the version it
    answers)."""

    aggregate_id: UUID
    version: int
    position: int
    extra: dict[str, Any] = field(default_factory=dict)
    positions: tuple[int, ...] = ()


def head_position() -> int:
    """The notification id of the last event in the log (0 when empty)."""
    return get_app().recorder.max_notification_id() or 0


def events_with_metadata(aggregate_id: UUID) -> list[tuple[Any, Metadata]]:
    """An aggregate's stored events, oldest first, each with its metadata (who, how,
    which request): timelines and the export read them so. Each person's key is read
    once."""
    app = get_app()
    return app.mapper.decode_many(app.recorder.select_events(aggregate_id))
