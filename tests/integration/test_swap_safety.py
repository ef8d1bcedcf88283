"""The blue/green swap refuses what it would silently break (``projections/shadow.py``):

- objects depending on the live tables (a view, a materialized view, another table's
  foreign key) would follow the old tables into the retired schema and be dropped
  with them: the swap refuses, naming them, and the live read model stays;
- a migration that changed a default, a constraint or an index definition of the live
  tables while the shadow was filled would be reverted by the swap: it refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from projections.models import ProductCatalog
from projections.registry import get_projector
from projections.shadow import Shadow, ShadowDependents, ShadowOutdated, rebuild
from shop.databases import read_connection
from tests.givens import project, register, rows

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(read_connection.vendor != "postgresql", reason="needs PostgreSQL"),
]

TABLE = ProductCatalog._meta.db_table


def sql(statement: str, params=()) -> list[tuple]:
    with read_connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def ddl(do: str, undo: str) -> Iterator[None]:
    """A change to the read database's schema, undone afterwards (DDL outlives the
    test's flush)."""
    sql(do)
    try:
        yield
    finally:
        sql(undo)


@pytest.fixture
def catalog(event_store):
    for sku in ("MUG-1", "PEN-1", "CUP-1"):
        register(sku)
    project()
    return rows(ProductCatalog)


@pytest.mark.parametrize("dependent, named", [
    (f"CREATE VIEW cheap_products AS SELECT sku FROM {TABLE} WHERE price < 5",
     "view cheap_products"),
    (f"CREATE MATERIALIZED VIEW product_skus AS SELECT sku FROM {TABLE}",
     "materialized view product_skus"),
    (f"CREATE TABLE product_notes (product_id uuid REFERENCES {TABLE} (product_id))",
     "product_notes"),
])
def test_the_swap_refuses_to_drop_what_depends_on_the_live_tables(catalog, dependent, named):
    name = dependent.split(" AS ")[0].split(" (")[0].split()[-1]
    kind = "TABLE" if "TABLE" in dependent.split(" AS ")[0] else (
        "MATERIALIZED VIEW" if "MATERIALIZED" in dependent else "VIEW")
    with ddl(dependent, f"DROP {kind} IF EXISTS {name}"):
        with pytest.raises(ShadowDependents, match=named):
            rebuild(get_projector("product_catalog"))
        # Nothing was dropped or moved: the dependent and the live rows are there.
        assert sql("SELECT to_regclass(%s) IS NOT NULL", [name]) == [(True,)]
        assert rows(ProductCatalog) == catalog
        # Without it, the rebuild (resuming the shadow left waiting) swaps.
        sql(f"DROP {kind} {name}")
        rebuild(get_projector("product_catalog"))
    assert rows(ProductCatalog) == catalog


def sku_index() -> str:
    return sql(
        "SELECT indexrelid::regclass::text FROM pg_index"
        " WHERE indrelid = %s::regclass AND pg_get_indexdef(indexrelid) LIKE %s"
        " AND pg_get_indexdef(indexrelid) NOT LIKE %s",
        [TABLE, "%(sku)", "%pattern_ops%"],
    )[0][0]


@pytest.mark.parametrize("change", ["default", "check constraint", "index definition"])
def test_a_shape_change_during_the_rebuild_refuses_the_swap(catalog, change):
    shadow = Shadow(get_projector("product_catalog"), "rebuild")
    shadow.prepare(resume=False)
    shadow.fill(limit=100)
    index = sku_index()
    do, undo = {
        "default": (f"ALTER TABLE {TABLE} ALTER COLUMN stock SET DEFAULT 7",
                    f"ALTER TABLE {TABLE} ALTER COLUMN stock DROP DEFAULT"),
        "check constraint": (
            f"ALTER TABLE {TABLE} ADD CONSTRAINT stock_not_negative CHECK (stock >= 0)",
            f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS stock_not_negative"),
        "index definition": (
            f"DROP INDEX {index}; CREATE INDEX {index} ON {TABLE} (sku, name)",
            f"DROP INDEX IF EXISTS {index}; CREATE INDEX {index} ON {TABLE} (sku)"),
    }[change]
    try:
        with ddl(do, undo):
            with pytest.raises(ShadowOutdated, match="changed shape"):
                shadow.swap(limit=100)
            assert rows(ProductCatalog) == catalog  # the live model is untouched
    finally:
        shadow.drop()
    # The same shape on both sides swaps as ever.
    rebuild(get_projector("product_catalog"))
    assert rows(ProductCatalog) == catalog
