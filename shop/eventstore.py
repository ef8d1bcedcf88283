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
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.utils import Environment, strtobool

from shop.errors import ConcurrentUpdate, NotFound

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=Aggregate)
F = TypeVar("F", bound=Callable[..., Any])


class ShopApplication(Application):
    name = "shop"
    # Filled by the modules that own the aggregates (see ``snapshot_every``).
    snapshotting_intervals: ClassVar[dict[type[Aggregate], int]] = {}

    def _take_snapshots(self, processing_event: Any) -> None:
        # The events are committed by now; a failed snapshot must not turn an
        # accepted command into an error. The next interval takes another one.
        try:
            super()._take_snapshots(processing_event)
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
            # Never insert through the DB function: it skips the table lock that
            # makes notification ids commit in order (see ARCHITECTURE.md, rule 6).
            POSTGRES_ENABLE_DB_FUNCTIONS="no",
        )
        defaults = {
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "20",
            "POSTGRES_PRE_PING": "yes",
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


def _build_app(attempts: int = 5) -> ShopApplication:
    # Building the application creates the event tables if missing (CREATE ... IF NOT
    # EXISTS). Processes starting together (a prefork pool's children, gunicorn's
    # workers) can collide in PostgreSQL's catalog ("tuple concurrently updated",
    # a duplicate type): the loser retries and then finds the tables there.
    for attempt in range(1, attempts + 1):
        try:
            return ShopApplication(env=event_store_env())
        except PersistenceError:
            if attempt == attempts:
                raise
            logger.warning("Creating the event tables collided; retrying.", exc_info=True)
            time.sleep(random.uniform(0.01, 0.1) * attempt)
    raise AssertionError("unreachable")


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
    """What a command returns: the touched aggregate, its version, the log position."""

    aggregate_id: UUID
    version: int
    position: int


def save(*aggregates: Aggregate, primary: Aggregate | None = None) -> Saved:
    """Save aggregates in one atomic write and trigger the projections.

    Returns the primary aggregate's (default: the first's) id and new version, and the
    notification id of the last event appended.
    """
    recordings = get_app().save(*aggregates)
    if not recordings:
        raise RuntimeError("save() was called with no pending events")
    position = max(r.notification.id for r in recordings)
    # robust: the events are durable by now; a failing receiver (broker down, a
    # projection error) is logged and must not turn an accepted command into a 500.
    transaction.on_commit(
        functools.partial(events_saved.send, sender=ShopApplication, position=position),
        robust=True,
    )
    target = primary or aggregates[0]
    return Saved(aggregate_id=target.id, version=target.version, position=position)


def load(aggregate_id: UUID, cls: type[A], *, what: str | None = None) -> A:
    """Load an aggregate of the given type, or raise ``NotFound``."""
    try:
        aggregate = get_app().repository.get(aggregate_id)
    except AggregateNotFoundError:
        aggregate = None
    if not isinstance(aggregate, cls):
        raise NotFound(f"{what or cls.__name__} {aggregate_id} was not found.")
    return aggregate


def retry_on_conflict(func: F, attempts: int = 30) -> F:
    """Re-run a command when another writer saved the same aggregate first.

    Each attempt reloads the aggregates, so the rules are checked again against the
    state that won. After ``attempts`` lost races the client gets 409 concurrent_update.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, attempts + 1):
            try:
                return func(*args, **kwargs)
            except IntegrityError:
                if attempt == attempts:
                    break
                time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
        raise ConcurrentUpdate()

    return wrapper  # type: ignore[return-value]


def head_position() -> int:
    """The notification id of the last event in the log (0 when empty)."""
    return get_app().recorder.max_notification_id() or 0
