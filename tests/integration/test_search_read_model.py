"""The search's own structures stay equal to the catalog they are derived from: the
precomputed facet counts (``CatalogFacet``, and per lexeme ``CatalogTerm`` on
PostgreSQL) and the postings per lexeme (``CatalogPosting``, PostgreSQL) after every
kind of event, under concurrent commands and catch-ups, and after a rebuild; the
vocabulary likewise."""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from catalog.domain import InsufficientStock
from catalog.services import product_rename, product_reprice, product_restock
from orders.services import order_cancel
from projections.models import (
    CatalogFacet,
    CatalogPosting,
    CatalogTerm,
    CatalogWord,
    ProductCatalog,
)
from projections.registry import get_projector
from projections.runner import catch_up
from projections.search import Search, facet_key, facets, facets_without_q, search_products
from projections.shadow import rebuild
from shop.databases import read_connection
from tests.givens import place, project, register
from tests.support.prepared import read_through_rebuilds
from tests.support.threads import background


def counted() -> dict[tuple, int]:
    """The facet counts as the catalog's rows give them."""
    counts: dict[tuple, int] = {}
    for row in ProductCatalog.objects.all():
        counts[facet_key(row)] = counts.get(facet_key(row), 0) + 1
    return counts


def stored() -> dict[tuple, int]:
    return {(f.category, f.band, f.in_stock): f.count for f in CatalogFacet.objects.all()}


def counted_terms() -> dict[tuple, int]:
    """The term counts as the catalog's rows give them: each lexeme of a row's
    ``search_vector`` (as PostgreSQL parses it), with the row's facet key."""
    if read_connection.vendor != "postgresql":
        return {}
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT product_id, tsvector_to_array(search_vector) "
                       "FROM projections_productcatalog")
        lexemes = dict(cursor.fetchall())
    counts: dict[tuple, int] = {}
    for row in ProductCatalog.objects.all():
        for lexeme in lexemes[row.pk]:
            key = (lexeme, *facet_key(row))
            counts[key] = counts.get(key, 0) + 1
    return counts


def stored_terms() -> dict[tuple, int]:
    return {(t.lexeme, t.category, t.band, t.in_stock): t.count
            for t in CatalogTerm.objects.all()}


def derived_postings() -> dict[tuple, tuple]:
    """The postings as the catalog's rows give them: each lexeme of a row's
    ``search_vector``, with the row's category, its SKU and ``ts_rank`` of the lexeme
    (quoted here as a ``tsquery`` operand, not by the projector's SQL)."""
    if read_connection.vendor != "postgresql":
        return {}
    derived = {}
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT product_id, category, sku, tsvector_to_array(search_vector) "
                       "FROM projections_productcatalog")
        for pk, category, sku, lexemes in cursor.fetchall():
            for lexeme in lexemes:
                operand = "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"
                cursor.execute("SELECT ts_rank(search_vector, %s::tsquery)::float8 "
                               "FROM projections_productcatalog WHERE product_id = %s",
                               [operand, pk])
                derived[(pk, lexeme)] = (category, sku, cursor.fetchone()[0])
    return derived


def stored_postings() -> dict[tuple, tuple]:
    return {(p.product_id, p.lexeme): (p.category, p.sku, p.rank)
            for p in CatalogPosting.objects.all()}


@pytest.mark.django_db
def test_facet_counts_follow_every_event_and_answer_like_a_count(event_store, customer):
    mug = register("MUG-1", "Blue mug", price="9.50", stock=2, category="kitchen")
    register("TEE-1", "Tee", price="19.99", stock=5, category="clothing")
    lamp = register("LAMP-1", "Lamp", price="120.00", stock=1, category="home")
    project()
    assert stored() == counted()
    assert stored_terms() == counted_terms()
    assert stored_postings() == derived_postings()
    if connection.vendor == "postgresql":
        assert stored_terms()[("blue", "kitchen", 0, True)] == 1
        assert stored_postings()[(mug, "mug")][:2] == ("kitchen", "MUG-1")
    product_reprice(product_id=mug, price=Decimal("30.00"))  # another band
    order = place(customer, (mug, 2), (lamp, 1))  # out of stock
    project()
    assert stored() == counted()
    assert (("kitchen", 2, False) in stored()) and ("kitchen", 0, True) not in stored()
    assert stored_terms() == counted_terms()
    product_rename(product_id=mug, name="Green cup")  # other words
    project()
    assert stored_terms() == counted_terms()
    assert stored_postings() == derived_postings()
    if connection.vendor == "postgresql":
        assert ("blue", "kitchen", 2, False) not in stored_terms()
        assert stored_terms()[("cup", "kitchen", 2, False)] == 1
    order_cancel(order_id=order, user_id=customer.pk, is_staff=False)  # back in stock
    product_restock(product_id=lamp, quantity=3)
    project()
    assert stored() == counted()
    assert stored_terms() == counted_terms()
    assert stored_postings() == derived_postings()
    if connection.vendor == "postgresql":
        assert (mug, "blue") not in stored_postings()
        assert stored_postings()[(mug, "cup")][:2] == ("kitchen", "MUG-1")

    categories = [None, "kitchen", "clothing", ""]
    prices = [(None, None), (Decimal(10), None), (None, Decimal("24.99")),
              (Decimal(10), Decimal("49.99")), (Decimal(5), Decimal(30))]
    for category, (low, high), in_stock in itertools.product(categories, prices, [False, True]):
        search = Search(category=category, min_price=low, max_price=high, in_stock=in_stock)
        fast = search_products(search).facets
        matched = ProductCatalog.objects.filter(stock_available__gt=0) if in_stock else (
            ProductCatalog.objects.all())
        cat = Q(category=category) if category is not None else Q()
        price = Q()
        if low is not None:
            price &= Q(price__gte=low)
        if high is not None:
            price &= Q(price__lte=high)
        assert fast == facets(matched, cat, price)[0], search
        assert fast == facets_without_q(search, matched, price)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_facets_and_words_stay_exact_under_racing_commands_and_catch_ups(
    event_store, make_user, no_projection_trigger
):
    """Orders, reprices, restocks and renames race with two catch-up loops; then the
    counts and postings equal those of the rows, and a rebuild writes the same counts,
    postings and words."""
    users = [make_user(f"buyer{i}") for i in range(3)]
    products = [register(f"P-{i}", f"Thing {i}", price=f"{5 + i * 7}.00", stock=3,
                         category=f"cat{i % 3}") for i in range(8)]
    project()
    stop = threading.Event()
    failures: list[BaseException] = []

    def commands(worker: int) -> None:
        for step in range(12):
            product = products[(worker * 5 + step) % len(products)]
            if step % 4 == 0:
                price = Decimal(f"{(step * 13) % 140 + 1}.00")
                product_reprice(product_id=product, price=price)
            elif step % 4 == 1:
                with contextlib.suppress(InsufficientStock):  # a refused order
                    place(users[worker], (product, 1))
            elif step % 4 == 2:
                product_restock(product_id=product, quantity=1)
            else:
                product_rename(product_id=product, name=f"Renamed {worker} {step} widget")

    def catch_ups() -> None:
        while not stop.is_set():
            catch_up(get_projector("product_catalog"), batch_size=3)

    writers = [background(functools.partial(commands, i), failures) for i in range(3)]
    readers = [background(catch_ups, failures) for _ in range(2)]
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=60)
    assert failures == []
    project("product_catalog")
    assert stored() == counted()
    assert stored_terms() == counted_terms()
    assert {"widget", "renamed", "thing"} <= {key[0] for key in stored_terms()}
    live_postings = stored_postings()
    assert live_postings == derived_postings()
    assert {"widget", "renamed", "thing"} <= {lexeme for _pk, lexeme in live_postings}
    words = set(CatalogWord.objects.values_list("word", flat=True))
    assert {"renamed", "widget", "thing"} <= words
    live, live_terms = stored(), stored_terms()
    rebuild(get_projector("product_catalog"), batch_size=5)
    assert stored() == live == counted()
    assert stored_terms() == live_terms == counted_terms()
    assert stored_postings() == live_postings == derived_postings()
    assert set(CatalogWord.objects.values_list("word", flat=True)) == words


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_the_migration_counts_the_terms_of_a_catalog_that_had_none(
    event_store, no_projection_trigger
):
    """Deploying the term counts and postings to a shop with products: migration 0011
    creates ``CatalogTerm`` (lexemes compared byte by byte) and counts the catalog's
    terms, migration 0013 creates ``CatalogPosting`` and posts them."""
    from django.db.migrations.executor import MigrationExecutor

    from shop.databases import READ

    def migrate(target):
        executor = MigrationExecutor(connections[READ])  # the read side's database
        executor.loader.build_graph()
        executor.migrate(target)

    register("MUG-1", "Blue mug", price="9.50", stock=2, category="kitchen")
    register("TEE-1", "Blue tee", price="19.99", stock=0, category="clothing")
    project()
    expected, postings = counted_terms(), derived_postings()
    latest = MigrationExecutor(connections[READ]).loader.graph.leaf_nodes("projections")
    migrate([("projections", "0010_documents")])  # before the term counts
    migrate(latest)
    assert stored_terms() == expected
    assert stored_postings() == postings
    assert {"blue", "mug", "tee"} <= {lexeme for _pk, lexeme in postings}
    assert expected[("blue", "clothing", 1, False)] == 1
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT table_name, collation_name FROM information_schema.columns "
                       "WHERE table_name IN ('projections_catalogterm', "
                       "'projections_catalogposting') AND column_name = 'lexeme'")
        assert dict(cursor.fetchall()) == {"projections_catalogterm": "C",
                                           "projections_catalogposting": "C"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.parametrize(
    "search", [Search(q="hornet"), Search(q="wasp"), Search(category="hornets")],
    ids=["q", "q of one lexeme", "no q"])
def test_a_search_finds_every_product_its_position_includes_while_words_arrive(
    event_store, no_projection_trigger, search
):
    """Products whose names bring new lexemes of one word arrive while a loop searches
    that word (or, without ``q``, their category): each answer has every product its
    position includes, in its rows and in its facet counts. The lexemes a word begins
    are listed inside the search's own statement; listed by a statement before it, a
    product projected in between would be missing while the position says it is there.
    A word of one lexeme (``wasp``) and a search without ``q`` read the position with
    the kept counts (one prepared statement), the rows (postings, or the catalog) after
    them."""
    from catalog.domain import product_id_for_sku
    from projections.models import Checkpoint

    register("H-0", "Horneta wasp", price="5.00", category="hornets")
    project("product_catalog")
    arrived = {Checkpoint.objects.position_of("product_catalog"): "H-0"}
    done = threading.Event()
    failures: list[BaseException] = []

    def arrivals() -> None:
        for i, letter in enumerate("bcdefg", start=1):
            register(f"H-{i}", f"Hornet{letter} wasp", price="5.00", category="hornets")
            project("product_catalog")
            arrived[Checkpoint.objects.position_of("product_catalog")] = f"H-{i}"

    writer = background(arrivals, failures, then=done.set)
    searched = 0
    try:
        while not done.is_set() or searched < 8:
            result = search_products(search, position_of="product_catalog")
            found = {row["product_id"] for row in result.rows.values("product_id")[0:20]}
            included = {product_id_for_sku(sku) for at, sku in list(arrived.items())
                        if at <= result.position}
            assert included <= found, (result.position, sorted(arrived.items()))
            [counted] = result.facets["category"]
            assert counted["count"] >= len(included), (result.position, counted)
            searched += 1
            assert searched < 10_000
    finally:
        writer.join(timeout=60)
    assert failures == []
    result = search_products(search, position_of="product_catalog")
    assert len(result.rows.values("product_id")[0:20]) == 7
    assert result.facets["category"] == [{"value": "hornets", "count": 7}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_a_page_read_from_the_postings_holds_only_products_that_have_the_word(
    event_store, no_projection_trigger, monkeypatch
):
    """Products are renamed into and out of a word (once or twice in the name: other
    ranks) while a loop searches it (its page read from ``CatalogPosting``): every row
    of every answer has the word, because the postings and the documents are read in
    one statement and written in one transaction. At the end the page is the one
    ranked over the catalog."""
    import json

    from projections import search as search_module

    products = [register(f"W-{i}", f"Wasp {i}" if i % 2 else f"Bee {i}", category="garden")
                for i in range(6)]
    project("product_catalog")
    done = threading.Event()
    failures: list[BaseException] = []

    def renames() -> None:
        for step in range(12):
            for i, product in enumerate(products):
                name = f"Wasp {i}" if (i + step) % 2 else f"Bee {i}"
                if (i + step) % 3 == 0:
                    name += " wasp"
                product_rename(product_id=product, name=name)
            project("product_catalog")

    writer = background(renames, failures, then=done.set)
    searched = 0
    try:
        while not done.is_set() or searched < 8:
            result = search_products(Search(q="wasp", category="garden"), window=(0, 20))
            names = [json.loads(row["document"])["name"]
                     for row in result.rows.values("product_id", "document")[0:20]]
            assert names and all("wasp" in name.lower() for name in names), names
            searched += 1
            assert searched < 10_000
    finally:
        writer.join(timeout=120)
    assert failures == []
    assert stored_postings() == derived_postings()

    def page() -> list:
        found = search_products(Search(q="wasp"), window=(0, 20))
        return [row["product_id"] for row in found.rows.values("product_id")[0:20]]

    posted = page()
    monkeypatch.setattr(search_module, "POSTED", False)
    assert page() == posted and len(posted) == 4  # W-4 (twice) first, W-0, W-1, W-2


def text_indexes() -> list[str]:
    with read_connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = "
                       "'projections_productcatalog' AND indexdef LIKE '%%search_vector%%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_one_text_index_over_the_category_and_the_lexemes(event_store):
    """The text index is over (category, search_vector) (``btree_gin``, migration
    0012): a search within a category finds its matches in it, one without reads the
    lexemes alone. It replaced the index over the lexemes alone, and a blue/green
    rebuild keeps it."""
    register("MUG-1", "Blue mug", category="kitchen")
    project("product_catalog")
    for _ in range(2):
        [index] = text_indexes()
        assert "catalog_category_search" in index
        assert "USING gin (category, search_vector)" in index
        assert "WITH (fastupdate=off)" in index
        rebuild(get_projector("product_catalog"), batch_size=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.parametrize("search", [Search(q="mug"), Search(q="mu", category="kitchen")],
                         ids=["any category", "one category"])
def test_a_page_of_postings_is_read_in_order_from_their_index(event_store, search):
    """The statement of a search :func:`projections.search.posted` names reads its page
    from an index of the postings for its lexeme, in order (no sort of every posting),
    also after a blue/green rebuild. The lexeme it looks up comes from ``CatalogTerm``:
    both columns compare bytes (``COLLATE "C"``), else no such index could serve."""
    import re

    register("MUG-1", "Blue mug", category="kitchen")
    register("CUP-1", "Blue cup", category="kitchen")
    project("product_catalog")
    for _ in range(2):
        with CaptureQueriesContext(connections["read"]) as captured:
            found = search_products(search, window=(0, 20), position_of="product_catalog")
        assert len(found.rows[0:20]) == 1
        [statement] = [q["sql"] for q in captured.captured_queries
                       if "catalogposting" in q["sql"]]
        with read_connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table of two products
            cursor.execute("EXPLAIN " + statement)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        # The window function numbers the index's rows as they come: no Sort between.
        assert re.search(r"WindowAgg[^\n]*\n\s*->  Index (Only )?Scan using "
                         r"catalog_posting_(rank|category) ", plan), plan
        rebuild(get_projector("product_catalog"), batch_size=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.parametrize(("search", "containing"), [
    (Search(q="mug", sort="price"), "read_position"),
    (Search(q="mug"), "catalogposting"),  # its page from the postings
], ids=["by price", "by relevance"])
def test_prepared_searches_read_the_tables_a_rebuild_swaps_in(
    event_store, no_projection_trigger, search, containing
):
    """A search's statements are prepared on their connection once run
    ``PREPARE_THRESHOLD`` times (then PostgreSQL may plan them once). While one
    connection searches in a loop with its statements prepared, blue/green rebuilds
    swap the catalog's tables for new ones on another: no search fails or misses a
    product, and the prepared statements then read the new tables (a product projected
    into them is found). (psycopg forgets a connection's prepared statements when that
    connection itself drops or alters a table, or rolls back; not when another does.)"""
    from django.conf import settings

    if settings.PREPARE_THRESHOLD is None:
        pytest.skip("PREPARE_THRESHOLD=off: nothing is prepared")
    for i in range(6):
        register(f"MUG-{i}", f"Mug number {i}", price=f"{i + 3}.00", category="kitchen")
    project("product_catalog")

    def mugs() -> int:
        result = search_products(search, window=(0, 50), position_of="product_catalog")
        return len({row["product_id"] for row in result.rows.values("product_id")[0:50]})

    def arrive() -> None:
        register("MUG-9", "Mug number 9", price="9.00", category="kitchen")
        project("product_catalog")

    found, before, still = read_through_rebuilds(
        mugs, 6, "product_catalog", containing, arrive)
    assert found == 7
    assert set(before) <= set(still)  # the same statements, prepared before the swaps


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_a_search_whose_queries_django_records_logs_each_as_text(event_store):
    """While Django records queries (``DEBUG``, ``CaptureQueriesContext``), the search's
    hand-written statements are not prepared: psycopg keeps no text of a prepared one,
    and the log would show None from its sixth run on."""
    from shop.databases import READ

    register("MUG-1", "Blue mug", category="kitchen")
    register("MUG-2", "Blue mug", category="garden")
    project("product_catalog")
    for _ in range(8):
        with CaptureQueriesContext(connections[READ]) as captured:
            search_products(Search(q="blue mug"), position_of="product_catalog")
        logged = [query["sql"] for query in captured.captured_queries]
        assert all(isinstance(sql, str) for sql in logged)
        assert any("WITH matched" in sql for sql in logged)  # the search's own statement
