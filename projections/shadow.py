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
  SCHEMA``), give them the old tables' owner and privileges (GRANTs on the tables,
  their columns and identity sequences), set the live checkpoint, drop the old
  tables. A ``kill -9`` at any point leaves the live read model as it was (DDL is
  transactional); running it again resumes the shadow, or recreates it if the live
  tables changed shape or the projector's code changed meanwhile (its module's hash
  is the schema's comment).
- ``verify``: fill a shadow up to the live position, then compare both row by row in
  one REPEATABLE READ snapshot (the live checkpoint commits with its rows, so the
  snapshot shows the live model exactly at its position). The live model is only read.
  The shadow is dropped afterwards.

SQLite (the embedded default, small data) keeps the single-transaction rebuild of
``runner.rebuild``. Its ``verify`` replays into TEMP tables of the same names in one
transaction: SQLite resolves an unqualified table name in ``temp`` before ``main``, so
the same batch step writes them (``verify_sqlite``); the transaction is rolled back.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, transaction
from psycopg import sql

from projections import runner
from projections.models import Checkpoint
from projections.runner import Progress, Projector, catch_up
from shop.databases import READ, read_connection
from shop.eventstore import get_app

logger = logging.getLogger(__name__)

# How long the swap waits for the live tables (queries reading them queue behind it
# meanwhile) before it backs off and tries again; and how long it keeps trying.
SWAP_LOCK_TIMEOUT = "500ms"
SWAP_DEADLINE_SECONDS = 300.0


def check_duty_cycle(duty: float) -> float:
    """``duty`` if it is a fraction in (0, 1], else a ValueError saying what is wanted."""
    if isinstance(duty, bool) or not isinstance(duty, int | float) or not 0 < duty <= 1:
        raise ValueError(
            f"The duty cycle must be a number greater than 0 and at most 1 (the fraction"
            f" of wall time a replay works; 1: no pausing), not {duty!r}."
        )
    return float(duty)


class Pacer:
    """Keeps a replay working at most ``duty`` of the wall time, as PostgreSQL's
    ``vacuum_cost_delay`` does: ``pause()``, between two committed batches, sleeps
    ``busy * (1 - duty) / duty``, busy being the time since the last pause ended (or
    since ``restart()``), on the monotonic clock. Duty 1 never sleeps.

    Only committed batches are paced: a pause inside a transaction would hold its
    locks the longer (the swap's, SQLite's single-transaction rebuild and verify).
    ``sleep`` and ``clock`` are injectable for the tests.
    """

    def __init__(
        self,
        duty: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.duty = check_duty_cycle(duty)
        self.sleep, self.clock = sleep, clock
        self.slept = 0.0  # seconds paused in all
        self.pauses = 0
        self.restart()

    def restart(self) -> None:
        """The work measured by the next ``pause()`` starts now."""
        self.mark = self.clock()

    def pause(self) -> float:
        """Sleep in proportion to the work since the last pause; return the seconds."""
        if self.duty >= 1:
            return 0.0
        busy = max(self.clock() - self.mark, 0.0)
        seconds = busy * (1 - self.duty) / self.duty
        self.sleep(seconds)
        self.slept += seconds
        self.pauses += 1
        self.restart()
        return seconds


def pacer_for(duty_cycle: float | None) -> Pacer:
    """A pacer at ``duty_cycle``, or at ``PROJECTION_REBUILD_DUTY_CYCLE`` when None."""
    if duty_cycle is None:
        duty_cycle = settings.PROJECTION_REBUILD_DUTY_CYCLE
    return Pacer(duty_cycle)


class ShadowBusy(Exception):
    """Another rebuild or verify of the same projection is running."""


class ShadowOutdated(Exception):
    """The live tables changed shape while their shadow was being filled."""


class ShadowUnsupported(Exception):
    """The live tables have something the swap cannot carry over to the new ones."""


class ShadowDependents(ShadowUnsupported):
    """Other objects (a view, a materialized view, a foreign key) depend on the live
    tables: the swap would move them onto the retired tables and drop them with those."""


def quote(name: str) -> str:
    return read_connection.ops.quote_name(name)


def quote_role(name: str | None) -> str:
    """A role as GRANT names it (None: PUBLIC); role names may hold any character."""
    return "PUBLIC" if name is None else sql.Identifier(name).as_string()


# One privilege on a table: ("table", "", grantee, privilege, grantable); on one of its
# columns: ("column", column, …); on the sequence of one of its identity (or serial)
# columns: ("sequence", column, …). The grantee None is PUBLIC.
Grant = tuple[str, str, str | None, str, bool]


@dataclass
class Privileges:
    """A table's owner and who may do what with it (as ``aclexplode`` lists it)."""

    owner: str
    grants: set[Grant]
    sequences: dict[str, str]  # column -> its sequence, schema-qualified and quoted


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
        with read_connection.cursor() as cursor:
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
        with read_connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s::bigint)", [key])
            if not cursor.fetchone()[0]:
                raise ShadowBusy(
                    f"Another rebuild or verify of {self.projector.name} is running."
                )
        try:
            yield
        finally:
            with read_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s::bigint)", [key])

    def exists(self) -> bool:
        with read_connection.cursor() as cursor:
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
        with transaction.atomic(using=READ), read_connection.cursor() as cursor:
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
            # Refused now rather than at the swap, after the whole fill.
            self._check_sequences(*self._privileges(self.live, self.schema))
        return False

    def drop(self) -> None:
        with read_connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(self.schema)} CASCADE")

    def finish_indexes(self) -> None:
        """Build the indexes deferred until after the bulk load (if any)."""
        with transaction.atomic(using=READ), read_connection.cursor() as cursor:
            for table in self.tables:
                have = {index.name for index in self._indexes(self.schema, table)}
                for index in self._indexes(self.live, table):
                    if index.name not in have:
                        self._create_index(cursor, table, index)

    # --- filling ---------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Inside a transaction: the projector's tables and checkpoint are the shadow's."""
        with read_connection.cursor() as cursor:
            cursor.execute(
                f"SET LOCAL search_path TO {quote(self.schema)}, {quote(self.live)}"
            )
        try:
            yield
        finally:
            with read_connection.cursor() as cursor:
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
        pacer: Pacer | None = None,
    ) -> int:
        """Apply the log in committed batches until the head (or ``stop()``), pausing
        between two batches as ``pacer`` says (none: no pausing)."""
        total = 0
        if pacer:
            pacer.restart()
        while True:
            with transaction.atomic(using=READ):
                processed, head, position = self.step(limit, stop())
            total += processed
            if progress:
                progress(Progress(position, head, total))
            if processed < limit:
                return total
            if pacer:  # committed: nothing is held while it sleeps
                pacer.pause()

    def position(self) -> int:
        with transaction.atomic(using=READ), self.writing():
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
                with transaction.atomic(using=READ):
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
        with read_connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
            for table in self.tables:  # and keep them from changing shape until commit
                cursor.execute(f"LOCK TABLE {self._in(self.live, table)} IN EXCLUSIVE MODE")
            if not self._fits():
                raise ShadowOutdated(
                    f"The tables of {name} changed shape during the rebuild (a migration?);"
                    " run it again to rebuild them in their new shape."
                )
            dependents = self._dependents()
            if dependents:
                raise ShadowDependents(
                    f"Cannot swap in the rebuilt {name}: {'; '.join(dependents)} depend"
                    f"{'s' if len(dependents) == 1 else ''} on its live tables and would be"
                    " dropped with the old ones. Drop them, rebuild, then create them again."
                    " The live read model is unchanged; the rebuilt one waits in its shadow."
                )
            self._drop_schema(cursor, retired, if_exists=True)
            cursor.execute(f"CREATE SCHEMA {quote(retired)}")
            for table in self.tables:
                cursor.execute(
                    f"ALTER TABLE {self._in(self.live, table)} SET SCHEMA {quote(retired)}"
                )
                cursor.execute(
                    f"ALTER TABLE {self._in(self.schema, table)} SET SCHEMA {quote(self.live)}"
                )
            self._take_over_privileges(cursor, retired)
            # RESTRICT: whatever still depended on the old tables fails the swap (its
            # transaction rolls back) rather than being dropped with them.
            self._drop_schema(cursor, retired)
            self._drop_schema(cursor, self.schema)
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
        Checkpoint.objects.filter(pk=live_checkpoint.pk).update(position=position)
        live_checkpoint.position = position
        runner._mark_recovered(live_checkpoint)
        runner._announce(name, position)
        return applied

    def _drop_schema(self, cursor, schema: str, *, if_exists: bool = False) -> None:
        """Drop a schema of this shadow's, its tables first, all with RESTRICT."""
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
            [schema],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f"DROP TABLE {self._in(schema, table)} RESTRICT")
        exists = "IF EXISTS " if if_exists else ""
        cursor.execute(f"DROP SCHEMA {exists}{quote(schema)} RESTRICT")

    def _dependents(self) -> list[str]:
        """The objects outside the projector's tables that depend on the live ones:
        views and materialized views (by their rules), foreign keys of other tables.
        The tables' own constraints, defaults and generated columns (the catalog's
        search columns) move with them."""
        tables = [f"{self._in(self.live, table)}" for table in self.tables]
        with read_connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT DISTINCT CASE
                    WHEN d.classid = 'pg_rewrite'::regclass THEN
                        (SELECT CASE c.relkind WHEN 'm' THEN 'materialized view '
                                ELSE 'view ' END || c.oid::regclass::text
                         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                         WHERE r.oid = d.objid)
                    ELSE pg_describe_object(d.classid, d.objid, d.objsubid)
                END
                FROM pg_depend d
                WHERE d.refclassid = 'pg_class'::regclass
                  AND d.refobjid = ANY(%s::regclass[])
                  AND d.deptype = 'n'
                  AND NOT EXISTS (  -- the projector's tables' own constraints
                      SELECT 1 FROM pg_constraint k
                      WHERE d.classid = 'pg_constraint'::regclass AND k.oid = d.objid
                        AND k.conrelid = ANY(%s::regclass[]))
                  AND NOT EXISTS (  -- a view's rule on its own view
                      SELECT 1 FROM pg_rewrite r
                      WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
                        AND r.ev_class = ANY(%s::regclass[]))
                  AND NOT EXISTS (  -- the tables' own defaults and generated columns
                      SELECT 1 FROM pg_attrdef a
                      WHERE d.classid = 'pg_attrdef'::regclass AND a.oid = d.objid
                        AND a.adrelid = ANY(%s::regclass[]))
                ORDER BY 1
                """,
                [tables, tables, tables, tables],
            )
            return [row[0] for row in cursor.fetchall()]

    def _take_over_privileges(self, cursor, retired: str) -> None:
        """Give the swapped-in tables the owner and privileges of those they replace.

        The shadow's tables are created by the role running the rebuild, with its
        default privileges; ``LIKE`` copies neither owner nor GRANTs. Done here, within
        the swap, under the lock on the live tables: the privileges carried over are
        those of the moment of the swap, not of the start of a rebuild that may have
        run for hours or resumed a shadow days old (GRANT itself takes no table lock,
        so one issued during the few milliseconds of the swap may be lost). When both are
        already alike (the usual case), this is one catalog query and nothing else.

        - Owner: the old tables' owner. The swap may ``ALTER TABLE … SET SCHEMA`` the
          live tables only if the role running it owns them, is a member of their
          owner, or is a superuser; a member or superuser may also give the new tables
          to that owner (which also gives it their identity sequences), provided the
          owner has CREATE on the live schema. If it cannot, the swap fails and
          rolls back (the live model stays, the shadow is kept for a rerun): a read
          model silently owned by another role would lose its owner's rights.
        - Privileges: those of the tables, of their columns and of their identity
          sequences, revoked or granted until they match the old ones exactly; each
          is recorded as granted by the owner (PostgreSQL records a superuser's or a
          member's GRANT so), whoever granted the original.
        """
        old, new = self._privileges(retired, self.live)
        changed_owner = False
        for table in self.tables:
            if new[table].owner != old[table].owner:
                cursor.execute(
                    f"ALTER TABLE {self._in(self.live, table)}"
                    f" OWNER TO {quote_role(old[table].owner)}"
                )
                changed_owner = True
        if changed_owner:  # the new owner's own privileges now stand for the old one's
            (new,) = self._privileges(self.live)
        self._check_sequences(old, new)
        for table in self.tables:
            before, after = old[table], new[table]
            revoke = {grant[:4] for grant in after.grants - before.grants}
            for kind, column, grantee, privilege in sorted(revoke, key=str):
                on = self._privilege_target(table, kind, column, privilege, after)
                cursor.execute(f"REVOKE {on} FROM {quote_role(grantee)}")
            for kind, column, grantee, privilege, grantable in sorted(before.grants, key=str):
                if (kind, column, grantee, privilege, grantable) in after.grants and (
                    kind, column, grantee, privilege
                ) not in revoke:
                    continue
                on = self._privilege_target(table, kind, column, privilege, after)
                option = " WITH GRANT OPTION" if grantable else ""
                cursor.execute(f"GRANT {on} TO {quote_role(grantee)}{option}")

    def _check_sequences(self, live: dict[str, Privileges], new: dict[str, Privileges]) -> None:
        """Refuse serial columns: ``LIKE`` copies their default, which names the live
        table's own sequence, dropped with the old table after the swap (taking the
        default with it). Identity columns get a sequence of their own."""
        for table in self.tables:
            missing = set(live[table].sequences) - set(new[table].sequences)
            if missing:
                raise ShadowUnsupported(
                    f"{table}: column(s) {', '.join(sorted(missing))} take their values"
                    " from a sequence of the live table (serial, not identity), which"
                    " the swap would drop; make them identity columns to rebuild"
                    " blue/green."
                )

    def _privilege_target(
        self, table: str, kind: str, column: str, privilege: str, privileges: Privileges
    ) -> str:
        """The "<privilege> ON <object>" part of a GRANT or REVOKE."""
        if not privilege.replace(" ", "").isalpha():  # pragma: no cover - from the catalog
            raise ValueError(f"Unexpected privilege {privilege!r}")
        if kind == "sequence":
            return f"{privilege} ON SEQUENCE {privileges.sequences[column]}"
        columns = f" ({quote(column)})" if kind == "column" else ""
        return f"{privilege}{columns} ON TABLE {self._in(self.live, table)}"

    # --- comparing -------------------------------------------------------------------

    def differences(self, table: str, key_columns: list[str]) -> list[tuple[str, str]]:
        """Rows that differ between live and shadow: ("col=value, …", how)."""
        live, shadow = self._in(self.live, table), self._in(self.schema, table)
        columns = [quote(column) for column in key_columns]
        first = columns[0]
        on = " AND ".join(f"l.{c} = s.{c}" for c in columns)
        keys = ", ".join(f"coalesce(l.{c}, s.{c})::text" for c in columns)
        with read_connection.cursor() as cursor:
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
        with read_connection.cursor() as cursor:
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
        have the live tables' shape: columns (types, nullability, defaults),
        constraints (``pg_get_constraintdef``) and indexes (``pg_get_indexdef``)."""
        with read_connection.cursor() as cursor:
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
            if self._constraints(self.schema, table) != self._constraints(self.live, table):
                return False
            have = {index.name: self._shape(index, self.schema)
                    for index in self._indexes(self.schema, table)}
            for index in self._indexes(self.live, table):
                if not (index.constraint or not self.defer_indexes):
                    continue  # built after the fill, from the live definition
                if have.get(index.name) != self._shape(index, self.live):
                    return False
        return True

    @staticmethod
    def _shape(index: Index, schema: str) -> str:
        """An index's definition (``pg_get_indexdef``) without its schema."""
        return index.definition.replace(f" ON {quote(schema)}.", " ON ").replace(
            f" ON {schema}.", " ON ")

    def _constraints(self, schema: str, table: str) -> list[tuple]:
        """Each constraint's name, kind and ``pg_get_constraintdef``."""
        with read_connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.conname, c.contype, pg_get_constraintdef(c.oid)"
                " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
                " JOIN pg_namespace n ON n.oid = t.relnamespace"
                " WHERE n.nspname = %s AND t.relname = %s ORDER BY c.conname",
                [schema, table],
            )
            return cursor.fetchall()

    def _privileges(self, *schemas: str) -> list[dict[str, Privileges]]:
        """The owner and privileges of the projector's tables in each schema."""
        found: dict[str, dict[str, Privileges]] = {schema: {} for schema in schemas}
        with read_connection.cursor() as cursor:
            cursor.execute(
                """
                WITH t AS (
                    SELECT c.oid, n.nspname, c.relname, c.relowner, c.relacl FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = ANY(%s) AND c.relname = ANY(%s) AND c.relkind = 'r'
                ), acl AS (
                    SELECT t.oid, 'table' AS kind, '' AS col, NULL AS seq, a.*
                    FROM t, aclexplode(coalesce(t.relacl, acldefault('r', t.relowner))) a
                  UNION ALL
                    SELECT t.oid, 'column', att.attname, NULL, a.*
                    FROM t JOIN pg_attribute att ON att.attrelid = t.oid
                    CROSS JOIN aclexplode(att.attacl) a
                    WHERE att.attnum > 0 AND NOT att.attisdropped
                  UNION ALL
                    SELECT t.oid, 'sequence', att.attname,
                           quote_ident(sn.nspname) || '.' || quote_ident(s.relname), a.*
                    FROM t
                    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass
                        AND d.refobjid = t.oid AND d.classid = 'pg_class'::regclass
                        AND d.deptype IN ('a', 'i')
                    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                    JOIN pg_namespace sn ON sn.oid = s.relnamespace
                    JOIN pg_attribute att ON att.attrelid = t.oid
                        AND att.attnum = d.refobjsubid
                    -- Kept when nobody may use it (an empty ACL): it is still there.
                    LEFT JOIN LATERAL aclexplode(
                        coalesce(s.relacl, acldefault('s', s.relowner))
                    ) a ON true
                )
                SELECT t.nspname, t.relname, pg_get_userbyid(t.relowner), acl.kind, acl.col,
                       acl.seq, r.rolname, acl.privilege_type, acl.is_grantable
                FROM t LEFT JOIN acl ON acl.oid = t.oid
                LEFT JOIN pg_roles r ON r.oid = acl.grantee
                """,
                [list(schemas), self.tables],
            )
            for schema, table, owner, kind, column, sequence, grantee, privilege, grantable in (
                cursor.fetchall()
            ):
                privileges = found[schema].setdefault(table, Privileges(owner, set(), {}))
                if sequence:
                    privileges.sequences[column] = sequence
                if privilege is not None:
                    privileges.grants.add((kind, column, grantee, privilege, grantable))
        for schema, tables in found.items():
            missing = set(self.tables) - set(tables)
            if missing:  # pragma: no cover - the swap or prepare() just put them there
                raise RuntimeError(f"No table {', '.join(sorted(missing))} in {schema}")
        return [found[schema] for schema in schemas]

    def _columns(self, schema: str, table: str) -> list[tuple]:
        with read_connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns"
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
    duty_cycle: float | None = None,
) -> int:
    """Rebuild the projector's read model from the whole log; returns events applied.

    PostgreSQL: blue/green through a shadow (module docstring), its fill paced to
    ``duty_cycle`` (None: ``PROJECTION_REBUILD_DUTY_CYCLE``; see ``Pacer``), not its
    swap. Elsewhere: the single-transaction rebuild, fine for the embedded default's
    small data, not paced (a pause would hold SQLite's write lock the longer).
    """
    pacer = pacer_for(duty_cycle)  # a bad duty cycle fails before any work
    if read_connection.vendor != "postgresql":
        return runner.rebuild(projector, batch_size=batch_size, progress=progress)
    limit = batch_size or settings.PROJECTION_REBUILD_BATCH_SIZE
    if defer_indexes is None:
        defer_indexes = settings.PROJECTION_REBUILD_DEFER_INDEXES
    shadow = Shadow(projector, "rebuild", defer_indexes=defer_indexes)
    with shadow.exclusive():
        resumed = shadow.prepare(resume=True)
        if resumed:
            logger.info("Resuming the rebuild of %s from %s", projector.name, shadow.position())
        applied = shadow.fill(limit=limit, progress=progress, pacer=pacer)
        shadow.finish_indexes()
        applied += shadow.swap(limit=limit)  # not paced: it holds the live checkpoint
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
    duty_cycle: float | None = None,
) -> tuple[int, list[Drift]]:
    """Replay the log into a shadow and compare it with the live read model.

    Returns the position compared at and every differing row. Reads the live model
    only; drops the shadow before returning. The shadow's fill is paced to
    ``duty_cycle`` as ``rebuild``'s is (not on SQLite: one transaction).
    """
    pacer = pacer_for(duty_cycle)
    limit = batch_size or settings.PROJECTION_REBUILD_BATCH_SIZE
    if read_connection.vendor == "sqlite":
        return verify_sqlite(projector, limit=limit, progress=progress)
    shadow = Shadow(projector, "verify")
    name = projector.name
    with shadow.exclusive():
        shadow.prepare(resume=False)
        try:
            # Never beyond the live position: the shadow must be able to meet it.
            shadow.fill(limit=limit, progress=progress, pacer=pacer,
                        stop=lambda: runner.projection_position(name))
            with transaction.atomic(using=READ):
                with read_connection.cursor() as cursor:
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


class _RollBack(Exception):
    """Leaves the SQLite verify's transaction, and with it the TEMP tables, undone."""


def verify_sqlite(
    projector: Projector,
    *,
    limit: int,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[int, list[Drift]]:
    """``verify`` on SQLite: one transaction (writers wait, as for its rebuild) that
    replays the log up to the live position into TEMP copies of the projector's tables
    and checkpoint, compares them with the live (``main``) tables, and rolls back."""
    tables = [model._meta.db_table for model in projector.models]
    result: tuple[int, list[Drift]] = (0, [])
    try:
        with transaction.atomic(using=READ):
            position = runner.projection_position(projector.name)
            with read_connection.cursor() as cursor:
                for table in [Checkpoint._meta.db_table, *tables]:
                    _temp_copy(cursor, table)
            total = 0
            while True:  # the temp checkpoint starts at 0
                checkpoint = Checkpoint.objects.lock(projector.name)
                processed, head = runner._process_batch(
                    projector, checkpoint, get_app(), limit, stop=position, announce=False
                )
                total += processed
                if progress:
                    progress(Progress(checkpoint.position, head, total))
                if processed < limit:
                    break
            drifts = [
                Drift(model._meta.db_table, key, how)
                for model in projector.models
                for key, how in _sqlite_differences(model)
            ]
            result = (position, drifts)
            raise _RollBack
    except _RollBack:
        pass
    return result


def _temp_copy(cursor, table: str) -> None:
    """An empty TEMP table named like ``table``, with its columns, constraints and
    indexes (their SQL as SQLite keeps it, moved to ``temp``). Not its triggers: they
    keep the search index (FTS5), which the replay does not compare."""
    cursor.execute(
        "SELECT type, sql FROM main.sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL"
        " AND type IN ('table', 'index') ORDER BY type = 'index'", [table]
    )
    for kind, statement in cursor.fetchall():
        if kind == "table":
            statement = statement.replace("CREATE TABLE ", "CREATE TEMP TABLE ", 1)
        else:  # CREATE [UNIQUE] INDEX "name" ON "table" (...): the name goes in temp
            head, _, rest = statement.partition(" INDEX ")
            statement = f"{head} INDEX temp.{rest}"
        cursor.execute(statement)


def _sqlite_differences(model: type) -> list[tuple[str, str]]:
    """Rows of ``model``'s table that differ between ``main`` (live) and ``temp``
    (replayed). JSON is compared as values, as PostgreSQL's jsonb is: SQLite keeps the
    text, whose spacing depends on what wrote it (Django, or SQLite's JSON functions)."""
    table = model._meta.db_table
    key_columns = [field.column for field in model._meta.pk_fields]
    json_columns = {field.column for field in model._meta.concrete_fields
                    if field.get_internal_type() == "JSONField"}

    def rows(schema: str) -> dict[tuple, tuple]:
        with read_connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {schema}.{quote(table)}")
            names = [column[0] for column in cursor.description]
            at = [names.index(column) for column in key_columns]
            return {
                tuple(row[i] for i in at): tuple(
                    json.loads(value) if name in json_columns and value is not None
                    else value for name, value in zip(names, row, strict=True))
                for row in cursor.fetchall()
            }

    live, replayed = rows("main"), rows("temp")
    found = []
    for key in sorted(live.keys() | replayed.keys(), key=lambda k: [str(v) for v in k]):
        if key not in live:
            how = "missing from the live model"
        elif key not in replayed:
            how = "not in the log"
        elif live[key] != replayed[key]:
            how = "differs"
        else:
            continue
        found.append((", ".join(f"{c}={v}" for c, v in zip(key_columns, key, strict=True)),
                      how))
    return found


def leftover_shadows() -> list[str]:
    """Schemas of shadows (or retired tables) that exist now: none when idle."""
    with read_connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace"
            " WHERE nspname LIKE 'shadow\\_%%' OR nspname LIKE 'retired\\_%%' ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]

