"""The event store's PostgreSQL recorder: the library's, with a command's write in one
round trip, and the writers' advisory locks on that same connection.

The library inserts a command's events through a psycopg pipeline: BEGIN, the table
lock, NOTIFY, the INSERT, a sync, COMMIT; two round trips, and the pipeline's own
bookkeeping was a tenth of an order's CPU in gunicorn. Here the same statements go as
ONE simple query (client-side binding), which PostgreSQL runs as one implicit
transaction: the lock (ARCHITECTURE.md rule 6: notification ids commit in order), the
NOTIFY the library's subscriptions wait on, the INSERT ... RETURNING. A failure in any
of them rolls all of them back. The library's contract tests run against this class
(tests/integration/test_event_recorder.py).

``holding()`` serves ``shop.eventstore.exclusive``: a command's writers queue on
transaction-level advisory locks taken on a connection of the event store's own pool,
BEGIN and the first lock in one round trip. The command's save then runs on that
connection and ends with COMMIT in the same query, so the events commit and the locks
are released at once, with no round trip of their own. A block that saves nothing
(a rejected or no-op command, a replay) commits on leaving, or rolls back if it raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import ClientCursor, Connection
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Composable, Identifier

_IN_TRANSACTION = (TransactionStatus.INTRANS, TransactionStatus.INERROR)

# psycopg's errors as the library's (its ``get_connection`` maps them the same way):
# ``retry_on_conflict`` and the API look for these. Most specific first.
_LIBRARY_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, PersistenceError),
)


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        for theirs, ours in _LIBRARY_ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise  # pragma: no cover - psycopg.Error is the last entry


class LockHolder:
    """A pooled connection holding a command's advisory locks (see ``holding``)."""

    def __init__(self, datastore: PostgresDatastore, conn: Connection[Any]) -> None:
        self.datastore = datastore
        self.conn = conn
        self.keys: list[int] = []
        self.timeout_seconds = 10.0

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status in _IN_TRANSACTION

    def lock(self, keys: Sequence[int], timeout_seconds: float) -> None:
        """Take ``keys`` (sorted by the caller: no deadlock between two commands),
        waiting at most ``timeout_seconds``: then the library's ``OperationalError``,
        caused by psycopg's ``LockNotAvailable``. One round trip, whatever the state:
        BEGIN first if no transaction is open; if a failed save aborted it, ROLLBACK
        and BEGIN first, and take again every lock held so far: PostgreSQL released
        them with the failed statement, so a retry within the block (a nested
        ``exclusive()``) runs alone again. Another writer may pass in between; the
        version checks keep that correct, as without any lock."""
        status = self.conn.info.transaction_status
        start = ""
        if status != TransactionStatus.INTRANS:
            if status == TransactionStatus.INERROR:
                start, keys = "ROLLBACK; ", sorted({*self.keys, *keys})
            start += _BEGIN.format(max(1, int(timeout_seconds * 1000)))
            self.keys = []
        # The keys are ours (64-bit ints), written into the statement: quoting them
        # as a parameter was most of this round trip's CPU in gunicorn (py-spy).
        statement = start + (_LOCK.format(",".join(str(int(k)) for k in keys)) if keys else "")
        self.timeout_seconds = timeout_seconds
        with library_errors(), ClientCursor(self.conn) as cursor:
            cursor.execute(statement)
        self.keys.extend(keys)

    def recover(self) -> None:
        """After a failed save in this block: a usable transaction holding the same
        locks again (see ``lock``)."""
        if self.conn.info.transaction_status == TransactionStatus.INERROR:
            self.lock([], self.timeout_seconds)

    def end(self, *, commit: bool) -> None:
        """End the transaction no save has ended, and its locks with it: commit what
        the block wrote on this connection (e.g. the idempotency cleanup's delete), or
        roll it back if the block raised."""
        if not self.in_transaction or self.conn.closed:
            return
        if commit:
            with library_errors():
                self.conn.execute("COMMIT")
            return
        with contextlib.suppress(psycopg.Error):  # a broken connection: the pool drops it
            self.conn.execute("ROLLBACK")


def _holder_aware(datastore: PostgresDatastore) -> None:
    """Make ``datastore.get_connection()`` lend the context's lock holder's connection
    when there is one (the snapshot recorder shares this datastore, so it too)."""
    if getattr(datastore, "_lends_holder", False):
        return
    pooled = datastore.get_connection

    @contextlib.contextmanager
    def get_connection() -> Iterator[Connection[Any]]:
        holder = _holder.get()
        if holder is None or holder.datastore is not datastore:
            with pooled() as conn:
                yield conn
            return
        with library_errors():
            yield holder.conn

    datastore.get_connection = get_connection  # type: ignore[method-assign]
    datastore._lends_holder = True  # type: ignore[attr-defined]


_LOCK = "SELECT pg_advisory_xact_lock(k) FROM unnest(ARRAY[{}]::bigint[]) AS k"
_BEGIN = "BEGIN; SET LOCAL lock_timeout = '{}ms'; "
_holder: ContextVar[LockHolder | None] = ContextVar("event_store_lock_holder", default=None)


class ShopRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose insert is one round trip (see the module)."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        insert = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=Identifier(datastore.originator_id_type),
        )
        parts: list[Composable] = [*self.lock_table_statements]
        parts.append(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
        parts.append(insert)
        # Rendered once: composing them per insert was a measurable part of its CPU.
        self._one_trip = SQL("; ").join(parts).as_string()
        self._one_trip_committing = SQL("; ").join([*parts, SQL("COMMIT")]).as_string()
        _holder_aware(datastore)

    @contextlib.contextmanager
    def holding(self) -> Iterator[LockHolder]:
        """The lock holder of this context: the enclosing block's, or a new one on a
        connection of the pool, ended (see ``LockHolder.end``) and given back on leaving.
        Meanwhile every use of the event store in this context runs on that connection
        (``_holder_aware``): a command then takes one connection, not one per query,
        and a thread waiting for the locks never keeps a lock holder from the pool."""
        holder = _holder.get()
        if holder is not None and holder.datastore is self.datastore:
            yield holder
            return
        with self.datastore.get_connection() as conn:
            holder = LockHolder(self.datastore, conn)
            token = _holder.set(holder)
            try:
                yield holder
            except BaseException:
                _holder.reset(token)
                holder.end(commit=False)
                raise
            _holder.reset(token)
            holder.end(commit=True)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self.datastore.enable_db_functions or not stored_events:
            return super().insert_events(stored_events, **kwargs)
        holder = _holder.get()
        if holder is not None and holder.datastore is self.datastore and holder.in_transaction:
            # Not retried on a dead connection: the locks died with it, and whether the
            # COMMIT landed is unknown. The command fails; a keyed retry replays it.
            # A failure aborts the transaction (and PostgreSQL ends its locks): the
            # block's next lock or save starts another (``LockHolder.lock``).
            holder.recover()
            return self._insert(holder.conn, stored_events, commit=True)
        return self._insert_alone(stored_events)

    @retry((persistence.InterfaceError, persistence.OperationalError), max_attempts=10,
           wait=0.2)
    def _insert_alone(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        with self.datastore.get_connection() as conn:
            return self._insert(conn, stored_events, commit=False)

    def _insert(
        self, conn: Connection[Any], stored_events: Sequence[StoredEvent], *, commit: bool
    ) -> list[int]:
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        statement = self._one_trip_committing if commit else self._one_trip
        with library_errors(), ClientCursor(conn) as cursor:
            cursor.execute(statement, params)
            while cursor.description is None and cursor.nextset():
                pass  # the lock and NOTIFY return no rows; the INSERT's ids follow
            return [row["notification_id"] for row in cursor.fetchall()]
