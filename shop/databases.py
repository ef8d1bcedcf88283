"""The two databases: the write side's (``default``) and the read side's (``read``).

``DATABASE_URL`` holds the event store, users, tokens, idempotency records and the
other write-side tables. ``READ_DATABASE_URL`` holds the read side: every read model,
the projections' checkpoints and a rebuild's shadow tables (the apps in
``READ_SIDE_APPS``). Unset, the ``read`` alias connects to ``DATABASE_URL``'s database:
one database, as before, still reached through the ``read`` alias, so the code paths
are the same in both setups.

Django's multi-database support does the routing: ``ReadSideRouter`` sends the
read-side apps' models to ``read`` and the rest to ``default``, and lets each app's
migrations run only against its own database (both, when the two aliases name the
same database). Code that talks SQL on the read side uses ``read_connection`` and
``transaction.atomic(using=READ)``: never Django's default ``connection``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.utils.connection import ConnectionProxy

logger = logging.getLogger(__name__)

WRITE = DEFAULT_DB_ALIAS
READ = "read"

# The apps whose tables live in the read database.
READ_SIDE_APPS = frozenset({"projections"})

# Django's ``connection``, for the read side's database.
read_connection = ConnectionProxy(connections, READ)


def split() -> bool:
    """Whether the read side has a database of its own (decided by the settings, from
    the URLs: the test runner renames the databases as it creates them)."""
    return settings.READ_DATABASE_SPLIT


def alias_for_app(app_label: str) -> str:
    return READ if app_label in READ_SIDE_APPS else WRITE


# --- read replicas (READ_REPLICA_URLS) ------------------------------------------------
#
# Query endpoints read from a streaming replica of the read database; the worker,
# rebuilds and verification always use the read primary. A query picks its database
# once (``reading_from``), so one request reads one consistent database.

REPLICA_CHECK_SECONDS = 1.0  # how long one process trusts a replica's measured lag

# The database the current request's read-side queries go to (None: the read primary).
_serving: contextvars.ContextVar[str | None] = contextvars.ContextVar("serving", default=None)
_lag_lock = threading.Lock()
_lags: dict[str, tuple[float, float | None]] = {}  # alias -> (measured at, lag or None)


def replicas() -> list[str]:
    """The aliases of the read database's replicas, in READ_REPLICA_URLS' order."""
    return [alias for alias in settings.DATABASES if alias.startswith("replica")]


def replica_lag(alias: str) -> float | None:
    """Seconds the replica is behind the read primary, or None when it is down (or not
    a standby). Caught up (everything received is replayed) is 0, however long ago the
    last write was."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), CASE"
                " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
                " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
            )
            in_recovery, lag = cursor.fetchone()
    except DatabaseError:
        logger.warning("Read replica %s is unreachable", alias, exc_info=True)
        connections[alias].close()
        return None
    if not in_recovery:
        return None
    return float(lag or 0.0)


def replica_lags(*, fresh: bool = False) -> dict[str, float | None]:
    """Each replica's lag (None: down), measured at most once per
    ``REPLICA_CHECK_SECONDS`` per process unless ``fresh``."""
    now = time.monotonic()
    lags = {}
    for alias in replicas():
        with _lag_lock:
            measured = _lags.get(alias)
        if fresh or measured is None or now - measured[0] > REPLICA_CHECK_SECONDS:
            measured = (now, replica_lag(alias))
            with _lag_lock:
                _lags[alias] = measured
        lags[alias] = measured[1]
    return lags


def usable_replica() -> str | None:
    """A replica that is up and at most READ_REPLICA_MAX_LAG_SECONDS behind (the least
    behind), or None: the read primary serves."""
    limit = settings.READ_REPLICA_MAX_LAG_SECONDS
    usable = [(lag, alias) for alias, lag in replica_lags().items()
              if lag is not None and lag <= limit]
    return min(usable)[1] if usable else None


@contextlib.contextmanager
def reading_from(alias: str | None) -> Iterator[None]:
    """Within the block, the read side's queries read from ``alias`` (a replica; None:
    the read primary). Writes and locking reads always go to the primary."""
    token = _serving.set(alias)
    try:
        yield
    finally:
        _serving.reset(token)


def switch_to_primary() -> None:
    """The rest of the current ``reading_from`` block reads the read primary (a replica
    turned out too far behind for this request)."""
    _serving.set(None)


def serving() -> str:
    """The database the read side's queries read from right now."""
    return _serving.get() or READ


def prepared_cursor(alias: str | None = None) -> CursorWrapper:
    """A cursor of the read side's database ``alias`` (default: :func:`serving`) that
    binds its parameters on the server: psycopg then prepares a statement a connection
    has run ``PREPARE_THRESHOLD`` times, and PostgreSQL plans it once (a generic plan,
    when that is no costlier than planning each time). For the hand-written statements
    of ``projections.search``, whose planning was a third of their time, and the
    pages of ``projections.pages.StoredRows``. Their SQL may
    not repeat a parameter in two places PostgreSQL must find equal (a GROUP BY of a
    selected expression). Django's own cursors bind on the client and never prepare.

    Through Django's cursor wrapper: the same error translation and execute wrappers as
    ``connection.cursor()``. A plain cursor on SQLite, and while Django records the
    queries (``DEBUG``, a test's ``CaptureQueriesContext``): psycopg keeps no text of a
    statement it runs as a prepared one, and the query log would show None."""
    connection = connections[alias or serving()]
    if connection.vendor != "postgresql" or connection.queries_logged:
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        # As BaseDatabaseWrapper._cursor(), with a server-binding cursor.
        return connection._prepare_cursor(ServerBindingCursor(connection.connection))


@functools.cache
def row_converter(model: type[Model], fields: tuple[str, ...], alias: str
                  ) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """What turns a row of ``fields`` of ``model`` (names or attnames, in this order),
    read by a hand-written statement on ``alias``, into the values the ORM would have
    given: its converters (``SQLCompiler.get_converters``; on SQLite, text to UUIDs,
    datetimes, decimals and booleans; none on PostgreSQL). Kept per process, it holds
    no connection: each call converts with the calling thread's own."""
    connection = connections[alias]
    table = model._meta.db_table
    converting = []
    for index, name in enumerate(fields):
        column = model._meta.get_field(name).get_col(table)
        functions = (connection.ops.get_db_converters(column)
                     + column.get_db_converters(connection))
        if functions:
            converting.append((index, functions, column))
    if not converting:
        return tuple

    def convert(row: Sequence[Any]) -> tuple[Any, ...]:
        connection = connections[alias]
        values = list(row)
        for index, functions, column in converting:
            for function in functions:
                values[index] = function(values[index], column, connection)
        return tuple(values)

    return convert


class ReadSideRouter:
    """Read-side apps to ``read`` (their queries, within ``reading_from``, to a
    replica), everything else to ``default``."""

    def db_for_read(self, model, **hints) -> str:
        alias = alias_for_app(model._meta.app_label)
        return serving() if alias == READ else alias

    def db_for_write(self, model, **hints) -> str:
        return alias_for_app(model._meta.app_label)

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # Read models hold ids, never foreign keys into the write side.
        return alias_for_app(obj1._meta.app_label) == alias_for_app(obj2._meta.app_label)

    def allow_migrate(self, db: str, app_label: str, model_name=None, **hints) -> bool:
        if db.startswith("replica"):
            return False  # a standby replays its primary's migrations
        # One database behind both aliases: migrating either creates every table.
        return db == alias_for_app(app_label) or not split()
