"""The event store's recorders and the transactions a unit of work runs on them.

Two recorders, the library's with a little more:

- ``ShopRecorder`` (PostgreSQL) serialises inserts with a transaction-level advisory
  lock instead of the library's ``LOCK TABLE … IN EXCLUSIVE MODE``. Both make
  notification ids commit in the order they were drawn (ARCHITECTURE.md rule 6), but
  the table lock needs the UPDATE or DELETE privilege, and the application's role has
  only SELECT and INSERT on the events table: the log is append-only, down to its
  grants.
- ``ShopSQLiteRecorder`` (the embedded default): the library's, as it is.

Both also create the event store's side tables beside the events (the idempotency
records, ``shop.idempotency``), in the same database, so that a command's record
commits in the same transaction as its events.

A unit of work (``shop.unit_of_work``) runs its command on a ``Transaction`` from
``recorder.transaction()``: one database transaction on one connection, from the first
writer lock to the COMMIT. Its methods are the few statements a command needs; each
is one round trip. ``PostgresTransaction`` borrows a connection from the event store's
pool for the whole command and gives it back at ``close()`` (a dead one is dropped by
the pool, never retried on). ``SQLiteTransaction`` needs no locks (SQLite has one
writer at a time) and writes in one short transaction at the commit.

The library's own insert path (``insert_events``, which its contract tests drive) runs
on the same transaction code, so the tests of the library cover the command's SQL.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import ClientCursor, Connection
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier

from shop.personal_data import TOMBSTONE

# psycopg's errors as the library's (its ``get_connection`` maps them the same way):
# the unit of work's retry and the API look for these. Most specific first.
_LIBRARY_ERRORS: tuple[tuple[type[psycopg.Error], type[persistence.PersistenceError]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, persistence.PersistenceError),
)

#: PostgreSQL's "lock_not_available": a lock wait ran past ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"
IDEMPOTENCY_TABLE = "shop_idempotency"
DATA_KEYS_TABLE = "shop_data_keys"


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        for theirs, ours in _LIBRARY_ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise  # pragma: no cover - psycopg.Error is the last entry


def lock_wait_ran_out(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


@dataclass(frozen=True)
class StoredRecord:
    """An idempotency record as stored (see ``shop.idempotency.Record``)."""

    fingerprint: str
    status: int | None  # a literal answer's status (a refusal); None: the command ran
    body: str  # JSON text
    positions: tuple[int, ...]


@dataclass(frozen=True)
class RecordLookup:
    """What the store holds for one user's key: its live record, if any, and how many
    live records the user holds (counted up to the cap)."""

    record: StoredRecord | None
    live_records: int


@dataclass(frozen=True)
class Locked:
    """What a lock's round trip read besides (``None``: not asked): people's data keys
    (those found), and aggregates' events after the versions given."""

    data_keys: dict[int, bytes] | None = None
    events: dict[UUID, list[StoredEvent]] | None = None


@dataclass(frozen=True)
class NewRecord:
    """A record to write with a command's commit; ``positions`` of a save come from
    the insert itself."""

    record_id: UUID
    user_id: int
    fingerprint: str
    status: int | None
    body: str
    positions: tuple[int, ...] = ()


# --- PostgreSQL ------------------------------------------------------------------------


class ShopRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL recorder, with an advisory lock for the insert order
    and the side tables (see the module)."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema, table = datastore.schema, self.events_table_name
        # The two-key advisory lock space does not overlap the one-key space that the
        # writer locks on aggregates use.
        self.log_lock = SQL("SELECT pg_advisory_xact_lock({}, 0)").format(
            zlib.crc32(f"{schema}.{table}".encode()) - 2**31
        )
        self.lock_table_statements = [
            SQL("SET LOCAL lock_timeout = '{0}s'").format(datastore.lock_timeout),
            self.log_lock,
        ]
        names = {"schema": Identifier(schema), "events": Identifier(table),
                 "records": Identifier(IDEMPOTENCY_TABLE), "keys": Identifier(DATA_KEYS_TABLE),
                 "channel": Identifier(self.channel_name),
                 "id_type": Identifier(datastore.originator_id_type)}
        insert = SQL(
            "INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(**names)
        # Rendered once: composing them per command was a measurable part of its CPU.
        self.sql_append = SQL("{lock}; NOTIFY {channel}; {insert}").format(
            lock=self.log_lock, insert=insert, **names).as_string()
        self.sql_append_recorded = SQL(
            "{lock}; NOTIFY {channel}; "
            "WITH appended AS ({insert}), recorded AS ("
            "INSERT INTO {schema}.{records} "
            "(id, user_id, fingerprint, status, body, positions, created_at) "
            "SELECT %s, %s, %s, NULL, %s, array_agg(notification_id ORDER BY notification_id),"
            " now() FROM appended) "
            "SELECT notification_id FROM appended ORDER BY notification_id"
        ).format(lock=self.log_lock, insert=insert, **names).as_string()
        insert_record = (
            "INSERT INTO {schema}.{records} "
            "(id, user_id, fingerprint, status, body, positions, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, {created_at})"
        )
        self.sql_record = SQL(insert_record).format(
            created_at=SQL("now()"), **names).as_string()
        self.sql_record_at = SQL(insert_record).format(
            created_at=SQL("%s"), **names).as_string()
        self.sql_find_record = SQL(
            "SELECT r.fingerprint, r.status, r.body, r.positions, (SELECT count(*) FROM "
            "(SELECT 1 FROM {schema}.{records} WHERE user_id = %(user)s "
            "AND created_at > now() - %(ttl)s LIMIT %(cap)s) AS live) AS live_records "
            "FROM (SELECT 1) AS one LEFT JOIN {schema}.{records} AS r "
            "ON r.id = %(id)s AND r.created_at > now() - %(ttl)s"
        ).format(**names).as_string()
        self.sql_forget_expired_record = SQL(
            "DELETE FROM {schema}.{records} WHERE id = %(id)s AND created_at <= now() - %(ttl)s"
        ).format(**names).as_string()
        self.sql_delete_expired = SQL(
            "DELETE FROM {schema}.{records} WHERE id IN (SELECT id FROM {schema}.{records} "
            "WHERE created_at <= now() - %s ORDER BY created_at LIMIT %s)"
        ).format(**names)
        self.sql_select_events = SQL(
            "SELECT originator_version, topic, state FROM {schema}.{events} "
            "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version"
        ).format(**names)
        self.sql_position_of = SQL(
            "SELECT notification_id FROM {schema}.{events} "
            "WHERE originator_id = %s AND originator_version = %s"
        ).format(**names)
        self.sql_data_keys = SQL(
            "SELECT user_id, key FROM {schema}.{keys} WHERE user_id = ANY(%s)").format(**names)
        # The data keys of listed people (their ids written in: ours, ints), as the
        # last statement of a round trip that takes locks first.
        self.sql_data_keys_of = SQL(
            "SELECT user_id, key AS data_key FROM {schema}.{keys} "
            "WHERE user_id = ANY(ARRAY[").format(**names).as_string()
        # Each listed aggregate's events after a version, as the last statement of a
        # round trip that takes the aggregates' locks first.
        # LATERAL: one index range scan per aggregate (a join of the VALUES list with
        # the events table may be planned as a scan of the whole log).
        self.sql_events_after = ("SELECT w.id AS ff_id, e.ff_version, e.ff_topic, e.ff_state "
                                 "FROM (VALUES ", SQL(
            ") AS w (id, v) CROSS JOIN LATERAL (SELECT originator_version AS ff_version, "
            "topic AS ff_topic, state AS ff_state FROM {schema}.{events} "
            "WHERE originator_id = w.id AND originator_version > w.v "
            "ORDER BY originator_version) AS e"
        ).format(**names).as_string())
        self.sql_make_data_key = SQL(
            "INSERT INTO {schema}.{keys} (user_id, key, created_at) VALUES (%(user)s, %(key)s, "
            "now()) ON CONFLICT (user_id) DO NOTHING; "
            "SELECT key FROM {schema}.{keys} WHERE user_id = %(user)s"
        ).format(**names).as_string()
        # Forgetting leaves a tombstone, an empty key (shop.personal_data), even for a
        # person who had no key yet: a racing ``sql_make_data_key`` then makes none.
        self.sql_forget_data_key = SQL(
            "INSERT INTO {schema}.{keys} (user_id, key, created_at) VALUES (%s, ''::bytea, "
            "now()) ON CONFLICT (user_id) DO UPDATE SET key = EXCLUDED.key"
        ).format(**names).as_string()
        self.create_table_statements_side = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{keys} (user_id bigint PRIMARY KEY, "
                "key bytea NOT NULL, created_at timestamptz NOT NULL)"
            ).format(**names),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{records} ("
                "id uuid PRIMARY KEY, user_id bigint, fingerprint text NOT NULL, "
                "status smallint, body text NOT NULL, positions bigint[] NOT NULL, "
                "created_at timestamptz NOT NULL)"
            ).format(**names),
            SQL("CREATE INDEX IF NOT EXISTS {index} ON {schema}.{records} (created_at)").format(
                index=Identifier(f"{IDEMPOTENCY_TABLE}_created_at"), **names),
            SQL("CREATE INDEX IF NOT EXISTS {index} ON {schema}.{records} "
                "(user_id, created_at)").format(
                index=Identifier(f"{IDEMPOTENCY_TABLE}_user_created_at"), **names),
        ]

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            for statement in self.create_table_statements_side:
                cursor.execute(statement)

    def transaction(self, lock_wait_seconds: float,
                    snapshots: Any = None) -> PostgresTransaction:
        """A transaction for a unit of work; ``snapshots``: the snapshot recorder."""
        return PostgresTransaction(self, lock_wait_seconds, snapshots)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert, on the unit of work's path (its contract tests)."""
        if self.datastore.enable_db_functions:
            return super().insert_events(stored_events, **kwargs)
        if not stored_events:
            return []
        with self.transaction(float(self.datastore.lock_timeout or 10)) as transaction:
            return transaction.append_and_commit(stored_events)

    def find_record(self, record_id: UUID, user_id: int, ttl: timedelta,
                    cap: int) -> RecordLookup:
        """The live record ``record_id`` of a user (outside any transaction: a
        committed record is final)."""
        with self.datastore.get_connection() as conn, ClientCursor(conn) as cursor:
            cursor.execute(self.sql_find_record,
                           {"id": record_id, "user": user_id, "ttl": ttl, "cap": cap})
            return _lookup(cursor.fetchone())

    def insert_record(self, record: NewRecord, created_at: datetime) -> None:
        """A record written outside a command (the upgrade from an earlier release)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self.sql_record_at,
                           (record.record_id, record.user_id, record.fingerprint,
                            record.status, record.body, list(record.positions), created_at))

    def delete_expired_records(self, ttl: timedelta, batch: int) -> int:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self.sql_delete_expired, [ttl, batch])
            return cursor.rowcount

    # -- data keys (shop.personal_data), outside a unit of work

    def data_keys(self, user_ids: list[int]) -> dict[int, bytes]:
        with self.datastore.get_connection() as conn:
            rows = conn.execute(self.sql_data_keys, [list(user_ids)], prepare=True).fetchall()
        return {row["user_id"]: bytes(row["key"]) for row in rows}

    def make_data_key(self, user_id: int, key: bytes) -> bytes:
        """``key`` for ``user_id``, unless another writer gave them one first."""
        with self.datastore.get_connection() as conn, ClientCursor(conn) as cursor:
            cursor.execute(self.sql_make_data_key, {"user": user_id, "key": key})
            while cursor.description is None:
                cursor.nextset()
            return bytes(cursor.fetchone()["key"])


def _lookup(row: dict[str, Any]) -> RecordLookup:
    record = None
    if row["fingerprint"] is not None:
        record = StoredRecord(row["fingerprint"], row["status"], row["body"],
                              tuple(row["positions"]))
    return RecordLookup(record, row["live_records"])


class PostgresTransaction:
    """One transaction on one connection of the event store's pool (see the module).

    BEGIN goes with the first lock or write (one round trip with it); reads before it
    run on their own. ``close()`` rolls back what was not committed and gives the
    connection back; the pool drops a dead one.
    """

    def __init__(self, recorder: ShopRecorder, lock_wait_seconds: float,
                 snapshots: PostgresApplicationRecorder | None = None) -> None:
        self.recorder = recorder
        self.sql_select_snapshot = None if snapshots is None else SQL(
            "SELECT originator_version, topic, state FROM {}.{} WHERE originator_id = %s "
            "ORDER BY originator_version DESC LIMIT 1"
        ).format(Identifier(snapshots.datastore.schema), Identifier(snapshots.events_table_name))
        self.lock_wait_ms = max(1, int(lock_wait_seconds * 1000))
        pool = recorder.datastore.pool
        with library_errors():
            pool.open(wait=False)
            self.conn: Connection[Any] = pool.getconn()
        self.in_transaction = False

    def __enter__(self) -> PostgresTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def usable(self) -> bool:
        """Whether a statement can still run (no failed one aborted the transaction,
        the connection is alive)."""
        return not self.conn.closed and (
            self.conn.info.transaction_status != TransactionStatus.INERROR)

    def _begin(self) -> str:
        if self.in_transaction:
            return ""
        self.in_transaction = True
        return f"BEGIN; SET LOCAL lock_timeout = '{self.lock_wait_ms}ms'; "

    def _run(self, statement: str, params: Any = None, *, column: str = "") -> ClientCursor[Any]:
        """Run ``statement`` (several, separated by ``;``) in one round trip, the
        cursor left at the result that has ``column`` (if any)."""
        cursor = ClientCursor(self.conn)
        with library_errors():
            cursor.execute(statement, params)
            while column and column not in [c.name for c in cursor.description or ()]:
                if not cursor.nextset():
                    raise persistence.ProgrammingError(f"No result has {column!r}.")
        return cursor

    # -- locks

    def lock(self, keys: Sequence[int], data_keys_of: Sequence[int] = (),
             events_after: dict[UUID, int] | None = None) -> Locked:
        """Wait (at most the lock wait) for the writer locks ``keys``, in this order.

        In the same round trip, once the locks are held (statements of their own, so
        they read what is committed then): the data keys of the people
        ``data_keys_of``, and the events of each aggregate in ``events_after`` after
        the version given (a unit of work fast-forwards its cached aggregates)."""
        # The keys are ours (64-bit ints), written into the statement: quoting them as
        # parameters was most of this round trip's CPU in gunicorn (py-spy).
        listed = ",".join(str(int(k)) for k in keys)
        statements = [self._begin() + "SELECT pg_advisory_xact_lock(k) "
                      f"FROM unnest(ARRAY[{listed}]::bigint[]) AS k"]
        if data_keys_of:
            users = ",".join(str(int(u)) for u in data_keys_of)
            statements.append(f"{self.recorder.sql_data_keys_of}{users}]::bigint[])")
        if events_after:
            id_type = self.recorder.datastore.originator_id_type
            # Our own ids and versions (UUIDs, ints), written in as literals.
            rows = ",".join(f"('{UUID(str(aggregate_id))}'::{id_type},{int(version)})"
                            for aggregate_id, version in events_after.items())
            head, tail = self.recorder.sql_events_after
            statements.append(f"{head}{rows}{tail}")
        if len(statements) == 1:
            self._run(statements[0])
            return Locked()
        cursor = self._run("; ".join(statements))
        data_keys: dict[int, bytes] | None = {} if data_keys_of else None
        events: dict[UUID, list[StoredEvent]] | None = None
        if events_after:
            events = {aggregate_id: [] for aggregate_id in events_after}
            by_text = {str(aggregate_id): aggregate_id for aggregate_id in events_after}
        with library_errors():
            while True:
                names = [c.name for c in cursor.description or ()]
                if "data_key" in names and data_keys is not None:
                    data_keys.update({row["user_id"]: bytes(row["data_key"])
                                      for row in cursor.fetchall()})
                elif "ff_version" in names and events is not None:
                    for row in cursor.fetchall():
                        aggregate_id = by_text[str(row["ff_id"])]
                        events[aggregate_id].append(StoredEvent(
                            aggregate_id, row["ff_version"], row["ff_topic"],
                            bytes(row["ff_state"])))
                if not cursor.nextset():
                    break
        for listed in (events or {}).values():
            listed.sort(key=lambda stored: stored.originator_version)
        return Locked(data_keys, events)

    def try_lock(self, keys: Sequence[int]) -> bool:
        """Take the locks ``keys`` only if no one holds them; whether all were taken."""
        listed = ",".join(str(int(k)) for k in keys)
        cursor = self._run(self._begin() + "SELECT bool_and(pg_try_advisory_xact_lock(k)) "
                           f"AS taken FROM unnest(ARRAY[{listed}]::bigint[]) AS k",
                           column="taken")
        return bool(cursor.fetchone()["taken"])

    def claim(self, key_lock: int, record_id: UUID, user_id: int, ttl: timedelta,
              cap: int, data_keys_of: Sequence[int] = ()
              ) -> tuple[RecordLookup, dict[int, bytes] | None]:
        """Lock an idempotency key (first, before any aggregate), forget its expired
        record, and read its live one: one round trip. With ``data_keys_of``, the
        data keys of those people too, in the same round trip (as ``lock``)."""
        params = {"id": record_id, "user": user_id, "ttl": ttl, "cap": cap}
        statement = (f"{self._begin()}SELECT pg_advisory_xact_lock({int(key_lock)}); "
                     f"{self.recorder.sql_forget_expired_record}; "
                     f"{self.recorder.sql_find_record}")
        if not data_keys_of:
            cursor = self._run(statement, params, column="live_records")
            return _lookup(cursor.fetchone()), None
        users = ",".join(str(int(u)) for u in data_keys_of)
        cursor = self._run(
            f"{statement}; {self.recorder.sql_data_keys_of}{users}]::bigint[])",
            params, column="live_records")
        lookup = _lookup(cursor.fetchone())
        with library_errors():
            cursor.nextset()  # the keys' result follows the record's
            rows = cursor.fetchall()
        return lookup, {row["user_id"]: bytes(row["data_key"]) for row in rows}

    # -- reads

    def select_events(self, aggregate_id: UUID, after_version: int) -> list[StoredEvent]:
        with library_errors():
            rows = self.conn.execute(self.recorder.sql_select_events,
                                     [aggregate_id, after_version], prepare=True).fetchall()
        return [StoredEvent(aggregate_id, row["originator_version"], row["topic"],
                            bytes(row["state"])) for row in rows]

    def select_snapshot(self, aggregate_id: UUID) -> StoredEvent | None:
        if self.sql_select_snapshot is None:
            return None
        with library_errors():
            row = self.conn.execute(self.sql_select_snapshot, [aggregate_id],
                                    prepare=True).fetchone()
        if row is None:
            return None
        return StoredEvent(aggregate_id, row["originator_version"], row["topic"],
                           bytes(row["state"]))

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        with library_errors():
            row = self.conn.execute(self.recorder.sql_position_of, [aggregate_id, version],
                                    prepare=True).fetchone()
        return row["notification_id"] if row else None

    # -- data keys (shop.personal_data), in the transaction

    def data_keys(self, user_ids: list[int]) -> dict[int, bytes]:
        with library_errors():
            rows = self.conn.execute(self.recorder.sql_data_keys, [list(user_ids)],
                                     prepare=True).fetchall()
        return {row["user_id"]: bytes(row["key"]) for row in rows}

    def make_data_key(self, user_id: int, key: bytes) -> bytes:
        cursor = self._run(self._begin() + self.recorder.sql_make_data_key,
                           {"user": user_id, "key": key}, column="key")
        return bytes(cursor.fetchone()["key"])

    def forget_data_key(self, user_id: int) -> None:
        """Replace a person's data key with a tombstone (an empty key, written even if
        they had none); the key is gone at the commit."""
        self._run(self._begin() + self.recorder.sql_forget_data_key, [user_id])

    # -- writes: each ends the transaction

    def append_and_commit(self, stored: Sequence[StoredEvent],
                          record: NewRecord | None = None) -> list[int]:
        """The command's one atomic write, in one round trip: BEGIN unless begun, the
        log's advisory lock (ids commit in the order drawn), NOTIFY for the library's
        subscribers, the INSERT of the events (and of the idempotency record, in the
        same statement, with the ids it got), then COMMIT. Returns the notification
        ids, in the order of ``stored``. A failure (a version conflict) leaves the
        transaction aborted: ``close()`` rolls it back."""
        columns = (
            [e.originator_id for e in stored],
            [e.originator_version for e in stored],
            [e.topic for e in stored],
            [e.state for e in stored],
        )
        if record is None:
            statement, params = self.recorder.sql_append, columns
        else:
            statement = self.recorder.sql_append_recorded
            params = (*columns, record.record_id, record.user_id, record.fingerprint,
                      record.body)
        cursor = self._run(f"{self._begin()}{statement}; COMMIT", params,
                           column="notification_id")
        ids = [row["notification_id"] for row in cursor.fetchall()]
        self.in_transaction = False
        return ids

    def record_and_commit(self, record: NewRecord) -> None:
        """An idempotency record without events (a refusal, a no-op), then COMMIT."""
        self._run(f"{self._begin()}{self.recorder.sql_record}; COMMIT",
                  (record.record_id, record.user_id, record.fingerprint, record.status,
                   record.body, list(record.positions)))
        self.in_transaction = False

    def close(self) -> None:
        conn, pool = self.conn, self.recorder.datastore.pool
        if self.in_transaction and not conn.closed:
            with contextlib.suppress(psycopg.Error):  # a dead one: the pool drops it
                conn.execute("ROLLBACK")
        self.in_transaction = False
        if conn.info.transaction_status != TransactionStatus.IDLE and not conn.closed:
            conn.close()  # never lend a connection in an unknown state
        pool.putconn(conn)


# --- SQLite ----------------------------------------------------------------------------


class ShopSQLiteRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder with the side tables (see the module)."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} ("
            "id TEXT PRIMARY KEY, user_id INTEGER, fingerprint TEXT NOT NULL, "
            "status INTEGER, body TEXT NOT NULL, positions TEXT NOT NULL, "
            "created_at REAL NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {IDEMPOTENCY_TABLE}_created_at "
            f"ON {IDEMPOTENCY_TABLE} (created_at)",
            f"CREATE TABLE IF NOT EXISTS {DATA_KEYS_TABLE} (user_id INTEGER PRIMARY KEY, "
            "key BLOB NOT NULL, created_at REAL NOT NULL)",
        ]

    def data_keys(self, user_ids: list[int]) -> dict[int, bytes]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT user_id, key FROM {DATA_KEYS_TABLE} WHERE user_id IN "
                           f"({','.join('?' * len(user_ids))})", tuple(user_ids))
            return {row[0]: bytes(row[1]) for row in cursor.fetchall()}

    def make_data_key(self, user_id: int, key: bytes) -> bytes:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"INSERT OR IGNORE INTO {DATA_KEYS_TABLE} (user_id, key, created_at) "
                           "VALUES (?, ?, ?)", (user_id, key, time.time()))
            cursor.execute(f"SELECT key FROM {DATA_KEYS_TABLE} WHERE user_id = ?", (user_id,))
            return bytes(cursor.fetchone()[0])

    def transaction(self, lock_wait_seconds: float, snapshots: Any = None) -> SQLiteTransaction:
        return SQLiteTransaction(self, snapshots)

    def find_record(self, record_id: UUID, user_id: int, ttl: timedelta,
                    cap: int) -> RecordLookup:
        since = time.time() - ttl.total_seconds()
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT fingerprint, status, body, positions FROM {IDEMPOTENCY_TABLE} "
                "WHERE id = ? AND created_at > ?", (record_id.hex, since))
            row = cursor.fetchone()
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {IDEMPOTENCY_TABLE} "
                "WHERE user_id = ? AND created_at > ? LIMIT ?)", (user_id, since, cap))
            live = cursor.fetchone()[0]
        record = None
        if row is not None:
            record = StoredRecord(row[0], row[1], row[2], tuple(json.loads(row[3])))
        return RecordLookup(record, live)

    def insert_record(self, record: NewRecord, created_at: datetime) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            _insert_sqlite_record(cursor, record, record.positions, created_at.timestamp())

    def delete_expired_records(self, ttl: timedelta, batch: int) -> int:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"DELETE FROM {IDEMPOTENCY_TABLE} WHERE rowid IN (SELECT rowid FROM "
                f"{IDEMPOTENCY_TABLE} WHERE created_at <= ? ORDER BY created_at LIMIT ?)",
                (time.time() - ttl.total_seconds(), batch))
            cursor.execute("SELECT changes()")
            return cursor.fetchone()[0]


class SQLiteTransaction:
    """The embedded default's transaction: no locks (one writer at a time), reads on
    the library's connections, the writes in one short transaction at the commit.
    Two commands racing for one aggregate (or one idempotency key) collide on the
    primary key, and the loser retries."""

    usable = True

    def __init__(self, recorder: ShopSQLiteRecorder, snapshots: Any = None) -> None:
        self.recorder = recorder
        self.snapshots = snapshots
        self.ttl: timedelta | None = None
        self.forgotten: list[int] = []  # data keys to replace with tombstones at the commit

    def data_keys(self, user_ids: list[int]) -> dict[int, bytes]:
        return self.recorder.data_keys(user_ids)

    def make_data_key(self, user_id: int, key: bytes) -> bytes:
        return self.recorder.make_data_key(user_id, key)

    def forget_data_key(self, user_id: int) -> None:
        self.forgotten.append(user_id)

    def __enter__(self) -> SQLiteTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, keys: Sequence[int], data_keys_of: Sequence[int] = (),
             events_after: dict[UUID, int] | None = None) -> Locked:
        return Locked()  # nothing read: the unit of work reads when it needs to

    def try_lock(self, keys: Sequence[int]) -> bool:
        return True

    def claim(self, key_lock: int, record_id: UUID, user_id: int, ttl: timedelta,
              cap: int, data_keys_of: Sequence[int] = ()) -> tuple[RecordLookup, None]:
        self.ttl = ttl  # the expired record is forgotten at the commit
        return self.recorder.find_record(record_id, user_id, ttl, cap), None

    def select_events(self, aggregate_id: UUID, after_version: int) -> list[StoredEvent]:
        return list(self.recorder.select_events(aggregate_id, gt=after_version))

    def select_snapshot(self, aggregate_id: UUID) -> StoredEvent | None:
        if self.snapshots is None:
            return None
        found = self.snapshots.select_events(aggregate_id, desc=True, limit=1)
        return found[0] if found else None

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT rowid FROM {self.recorder.events_table_name} "  # noqa: S608
                "WHERE originator_id = ? AND originator_version = ?",
                (aggregate_id.hex, version))
            row = cursor.fetchone()
        return row[0] if row else None

    def append_and_commit(self, stored: Sequence[StoredEvent],
                          record: NewRecord | None = None) -> list[int]:
        with self.recorder.datastore.transaction(commit=True) as cursor:
            ids = list(self.recorder._insert_events(cursor, stored) or [])
            if record is not None:
                self._insert_record(cursor, record, tuple(ids))
            for user_id in self.forgotten:  # a tombstone (shop.personal_data)
                cursor.execute(f"INSERT INTO {DATA_KEYS_TABLE} (user_id, key, created_at) "
                               "VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                               "key = excluded.key", (user_id, TOMBSTONE, time.time()))
        return ids

    def record_and_commit(self, record: NewRecord) -> None:
        with self.recorder.datastore.transaction(commit=True) as cursor:
            self._insert_record(cursor, record, record.positions)

    def _insert_record(self, cursor: Any, record: NewRecord, positions: tuple[int, ...]) -> None:
        now = time.time()
        if self.ttl is not None:
            cursor.execute(f"DELETE FROM {IDEMPOTENCY_TABLE} WHERE id = ? AND created_at <= ?",
                           (record.record_id.hex, now - self.ttl.total_seconds()))
        _insert_sqlite_record(cursor, record, positions, now)

    def close(self) -> None:
        pass


def _insert_sqlite_record(cursor: Any, record: NewRecord, positions: tuple[int, ...],
                          created_at: float) -> None:
    cursor.execute(
        f"INSERT INTO {IDEMPOTENCY_TABLE} (id, user_id, fingerprint, status, body, positions, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record.record_id.hex, record.user_id, record.fingerprint, record.status,
         record.body, json.dumps(list(positions)), created_at))
