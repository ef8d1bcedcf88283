"""Blue/green rebuilds and drift checks: a shadow read model built beside the live one.

A *shadow* is a PostgreSQL schema (``shadow_<purpose>_<projection>``) holding an
empty copy of each table the projector owns (``Projector.models``: same names,
columns, constraints and index names) and a checkpoint table of its own. The
projector's SQL names its tables unqualified, so a batch transaction that starts with
``SET LOCAL search_path TO <shadow>, <live>`` writes the shadow and its checkpoint
with the very same batch step (``runner._process_batch``) the live projection uses,
while the live projection keeps following the log in its own transactions.

- ``rebuild``: fill the shadow in ordinary committed batches, then swap it in within
  one short transaction: lock the live checkpoint, apply the last few events to the
  shadow, move the live tables out and the shadow tables in (``ALTER TABLE … SET
  SCHEMA``), set the live checkpoint, drop the old tables. A ``kill -9`` at any point
  leaves the live read model as it was (DDL is transactional); running it again
  resumes the shadow, or recreates it if the live tables changed shape or the
  projector's code changed meanwhile (its module's hash is the schema's comment).
- ``verify``: fill a shadow up to the live position, then compare both row by row in
  one REPEATABLE READ snapshot (the live checkpoint commits with its rows, so the
  snapshot shows the live model exactly at its position). The live model is only read.
  The shadow is dropped afterwards.

SQLite (the embedded default, small data) keeps the single-transaction rebuild of
``runner.rebuild``; ``verify`` needs PostgreSQL.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, connection, transaction

from projections import runner
from projections.models import Checkpoint
from projections.runner import Progress, Projector, catch_up
from shop.eventstore import get_app

logger = logging.getLogger(__name__)

# How long the swap waits for the live tables (queries reading them queue behind it
# meanwhile) before it backs off and tries again; and how long it keeps trying.
SWAP_LOCK_TIMEOUT = "500ms"
SWAP_DEADLINE_SECONDS = 300.0


class ShadowBusy(Exception):
    """Another rebuild or verify of the same projection is running."""


class ShadowOutdated(Exception):
    """The live tables changed shape while their shadow was being filled."""


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # CREATE [UNIQUE] INDEX <name> ON <schema>.<table> USING …
    constraint: str | None  # the PRIMARY KEY / UNIQUE constraint it backs, if any
    constraint_type: str | None


class Shadow:
    """The shadow copy of one projector's read model (PostgreSQL only)."""

    def __init__(self, projector: Projector, purpose: str, *, defer_indexes: bool = False):
        self.projector = projector
        self.schema = f"shadow_{purpose}_{projector.name}"[:63]
        self.tables = [model._meta.db_table for model in projector.models]
        self.defer_indexes = defer_indexes
        # Rows in a shadow are only as good as the code that wrote them: a shadow is
        # resumed only by the same projector code (the rebuild may be for a fix).
        source = inspect.getsource(inspect.getmodule(type(projector)))
        self.fingerprint = "projector " + hashlib.sha256(source.encode()).hexdigest()[:16]
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema(), current_setting('search_path')")
            self.live, self.search_path = cursor.fetchone()

    # --- lifetime --------------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a session advisory lock on this shadow: one user at a time.

        A killed process's lock goes with its connection, so a rerun never waits for
        a dead one.
        """
        key = (0x5EAD << 32) | zlib.crc32(self.schema.encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s::bigint)", [key])
            if not cursor.fetchone()[0]:
                raise ShadowBusy(
                    f"Another rebuild or verify of {self.projector.name} is running."
                )
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s::bigint)", [key])

    def exists(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema])
            return cursor.fetchone() is not None

    def prepare(self, *, resume: bool = True) -> bool:
        """Create the shadow, or keep the one a killed run left if it still fits.

        Returns True when an existing shadow is resumed.
        """
        if resume and self.exists() and self._fits():
            return True
        self.drop()
        checkpoint = Checkpoint._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {quote(self.schema)}")
            cursor.execute(f"COMMENT ON SCHEMA {quote(self.schema)} IS %s", [self.fingerprint])
            cursor.execute(
                f"CREATE TABLE {self._in(self.schema, checkpoint)}"
                f" (LIKE {self._in(self.live, checkpoint)} INCLUDING ALL)"
            )
            for table in self.tables:
                # Constraints and defaults now; indexes by their live names below.
                cursor.execute(
                    f"CREATE TABLE {self._in(self.schema, table)}"
                    f" (LIKE {self._in(self.live, table)} INCLUDING ALL EXCLUDING INDEXES)"
                )
                for index in self._indexes(self.live, table):
                    if index.constraint or not self.defer_indexes:
                        self._create_index(cursor, table, index)
        return False

    def drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(self.schema)} CASCADE")

    def finish_indexes(self) -> None:
        """Build the indexes deferred until after the bulk load (if any)."""
        with transaction.atomic(), connection.cursor() as cursor:
            for table in self.tables:
                have = {index.name for index in self._indexes(self.schema, table)}
                for index in self._indexes(self.live, table):
                    if index.name not in have:
                        self._create_index(cursor, table, index)

    # --- filling ---------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Inside a transaction: the projector's tables and checkpoint are the shadow's."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SET LOCAL search_path TO {quote(self.schema)}, {quote(self.live)}"
            )
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('search_path', %s, true)", [self.search_path])

    def step(self, limit: int, stop: int | None = None) -> tuple[int, int, int]:
        """Apply the next batch to the shadow (the caller holds a transaction).

        Returns (processed, head, the shadow's position).
        """
        with self.writing():
            checkpoint = Checkpoint.objects.lock(self.projector.name)
            processed, head = runner._process_batch(
                self.projector, checkpoint, get_app(), limit, stop=stop, announce=False
            )
        return processed, head, checkpoint.position

    def fill(
        self,
        *,
        limit: int,
        progress: Callable[[Progress], None] | None = None,
        stop: Callable[[], int | None] = lambda: None,
    ) -> int:
        """Apply the log in committed batches until the head (or ``stop()``)."""
        total = 0
        while True:
            with transaction.atomic():
                processed, head, position = self.step(limit, stop())
            total += processed
            if progress:
                progress(Progress(position, head, total))
            if processed < limit:
                return total

    def position(self) -> int:
        with transaction.atomic(), self.writing():
            return runner.projection_position(self.projector.name)

    # --- switching -------------------------------------------------------------------

    def swap(self, *, limit: int) -> int:
        """Replace the live read model by the shadow in one short transaction.

        Returns the number of events applied to the shadow within it. Retries while
        the live tables are busy (a long query); the shadow is unharmed meanwhile.
        """
        deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
        while True:
            try:
                with transaction.atomic():
                    return self._swap(limit)
            except OperationalError as exc:  # a lock timeout: readers hold the tables
                if time.monotonic() >= deadline:
                    raise
                logger.info("Swapping %s waits for its tables: %s", self.projector.name, exc)
                time.sleep(0.2)

    def _swap(self, limit: int) -> int:
        name = self.projector.name
        live_checkpoint = Checkpoint.objects.lock(name)  # the live projection waits now
        applied = 0
        while True:
            processed, _head, position = self.step(limit)
            applied += processed
            if processed < limit:
                break
        retired = f"retired_{name}"[:63]
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
            for table in self.tables:  # and keep them from changing shape until commit
                cursor.execute(f"LOCK TABLE {self._in(self.live, table)} IN EXCLUSIVE MODE")
            if not self._fits():
                raise ShadowOutdated(
                    f"The tables of {name} changed shape during the rebuild (a migration?);"
                    " run it again to rebuild them in their new shape."
                )
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(retired)} CASCADE")
            cursor.execute(f"CREATE SCHEMA {quote(retired)}")
            for table in self.tables:
                cursor.execute(
                    f"ALTER TABLE {self._in(self.live, table)} SET SCHEMA {quote(retired)}"
                )
                cursor.execute(
                    f"ALTER TABLE {self._in(self.schema, table)} SET SCHEMA {quote(self.live)}"
                )
            cursor.execute(f"DROP SCHEMA {quote(retired)} CASCADE")
            cursor.execute(f"DROP SCHEMA {quote(self.schema)} CASCADE")
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
        Checkpoint.objects.filter(pk=live_checkpoint.pk).update(position=position)
        live_checkpoint.position = position
        runner._mark_recovered(live_checkpoint)
        runner._announce(name, position)
        return applied

    # --- comparing -------------------------------------------------------------------

    def differences(self, table: str, key_columns: list[str]) -> list[tuple[str, str]]:
        """Rows that differ between live and shadow: ("col=value, …", how)."""
        live, shadow = self._in(self.live, table), self._in(self.schema, table)
        columns = [quote(column) for column in key_columns]
        first = columns[0]
        on = " AND ".join(f"l.{c} = s.{c}" for c in columns)
        keys = ", ".join(f"coalesce(l.{c}, s.{c})::text" for c in columns)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT CASE WHEN l.{first} IS NULL THEN 'missing from the live model'
                            WHEN s.{first} IS NULL THEN 'not in the log'
                            ELSE 'differs' END,
                       {keys}
                FROM {live} AS l FULL OUTER JOIN {shadow} AS s ON {on}
                WHERE l.{first} IS NULL OR s.{first} IS NULL
                   OR ROW(l.*) IS DISTINCT FROM ROW(s.*)
                ORDER BY {", ".join(str(i + 2) for i in range(len(columns)))}
                """
            )
            return [
                (", ".join(f"{c}={v}" for c, v in zip(key_columns, values, strict=True)), how)
                for how, *values in cursor.fetchall()
            ]

    # --- the catalog -----------------------------------------------------------------

    def _in(self, schema: str, table: str) -> str:
        return f"{quote(schema)}.{quote(table)}"

    def _indexes(self, schema: str, table: str) -> list[Index]:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT i.relname, pg_get_indexdef(i.oid), c.conname, c.contype
                FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                JOIN pg_class t ON t.oid = x.indrelid
                JOIN pg_namespace n ON n.oid = t.relnamespace
                LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = t.oid
                WHERE n.nspname = %s AND t.relname = %s
                ORDER BY x.indisprimary DESC, i.relname
                """,
                [schema, table],
            )
            return [Index(*row) for row in cursor.fetchall()]

    def _create_index(self, cursor, table: str, index: Index) -> None:
        on = f" ON {self._in(self.live, table)} "
        live_definition = index.definition.replace(
            f" ON {quote(self.live)}.{quote(table)} ", on
        ).replace(f" ON {self.live}.{table} ", on)
        if on not in live_definition:  # pragma: no cover - pg_get_indexdef changed
            raise RuntimeError(f"Cannot read the definition of index {index.name}")
        cursor.execute(live_definition.replace(on, f" ON {self._in(self.schema, table)} "))
        if index.constraint:
            kind = {"p": "PRIMARY KEY", "u": "UNIQUE"}[index.constraint_type]
            cursor.execute(
                f"ALTER TABLE {self._in(self.schema, table)} ADD CONSTRAINT"
                f" {quote(index.constraint)} {kind} USING INDEX {quote(index.name)}"
            )

    def _fits(self) -> bool:
        """Whether the shadow was written by this projector code and its tables still
        have the live tables' columns and indexes."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace"
                " WHERE nspname = %s", [self.schema]
            )
            row = cursor.fetchone()
        if row is None or row[0] != self.fingerprint:
            return False
        for table in [Checkpoint._meta.db_table, *self.tables]:
            if self._columns(self.schema, table) != self._columns(self.live, table):
                return False
        for table in self.tables:
            names = {index.name for index in self._indexes(self.schema, table)}
            wanted = {
                index.name for index in self._indexes(self.live, table)
                if index.constraint or not self.defer_indexes
            }
            if not wanted <= names:
                return False
        return True

    def _columns(self, schema: str, table: str) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                [schema, table],
            )
            return cursor.fetchall()


# --- the two operations --------------------------------------------------------------


def rebuild(
    projector: Projector,
    *,
    batch_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    defer_indexes: bool | None = None,
) -> int:
    """Rebuild the projector's read model from the whole log; returns events applied.

    PostgreSQL: blue/green through a shadow (module docstring). Elsewhere: the
    single-transaction rebuild, fine for the embedded default's small data.
    """
    if connection.vendor != "postgresql":
        return runner.rebuild(projector, batch_size=batch_size, progress=progress)
    limit = batch_size or settings.PROJECTION_REBUILD_BATCH_SIZE
    if defer_indexes is None:
        defer_indexes = settings.PROJECTION_REBUILD_DEFER_INDEXES
    shadow = Shadow(projector, "rebuild", defer_indexes=defer_indexes)
    with shadow.exclusive():
        resumed = shadow.prepare(resume=True)
        if resumed:
            logger.info("Resuming the rebuild of %s from %s", projector.name, shadow.position())
        applied = shadow.fill(limit=limit, progress=progress)
        shadow.finish_indexes()
        applied += shadow.swap(limit=limit)
    # What was appended during the swap, as the next worker would (nothing if none).
    applied_live = catch_up(projector)
    logger.info("%s: rebuilt; %s events caught up after the swap", projector.name, applied_live)
    return applied


@dataclass
class Drift:
    """A row that differs: its table, its key ("order_id=…") and how it differs."""

    table: str
    key: str
    how: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.how}"


def verify(
    projector: Projector,
    *,
    batch_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[int, list[Drift]]:
    """Replay the log into a shadow and compare it with the live read model.

    Returns the position compared at and every differing row. Reads the live model
    only; drops the shadow before returning.
    """
    if connection.vendor != "postgresql":
        raise NotImplementedError("verify_projections needs PostgreSQL")
    limit = batch_size or settings.PROJECTION_REBUILD_BATCH_SIZE
    shadow = Shadow(projector, "verify")
    name = projector.name
    with shadow.exclusive():
        shadow.prepare(resume=False)
        try:
            # Never beyond the live position: the shadow must be able to meet it.
            shadow.fill(limit=limit, progress=progress,
                        stop=lambda: runner.projection_position(name))
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    # Before the snapshot: no swap may replace these tables under it.
                    for table in shadow.tables:
                        cursor.execute(
                            f"LOCK TABLE {shadow._in(shadow.live, table)} IN ACCESS SHARE MODE"
                        )
                # The snapshot starts here: live rows and checkpoint as of one commit.
                position = runner.projection_position(name)
                while True:  # the last events up to exactly the live position
                    processed, _head, _at = shadow.step(limit, stop=position)
                    if processed < limit:
                        break
                drifts = [
                    Drift(model._meta.db_table, key, how)
                    for model in projector.models
                    for key, how in shadow.differences(
                        model._meta.db_table, [f.column for f in model._meta.pk_fields]
                    )
                ]
        finally:
            shadow.drop()
    return position, drifts


def leftover_shadows() -> list[str]:
    """Schemas of shadows (or retired tables) that exist now: none when idle."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace"
            " WHERE nspname LIKE 'shadow\\_%%' OR nspname LIKE 'retired\\_%%' ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]

