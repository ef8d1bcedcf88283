"""Product search over HTTP on PostgreSQL: relevance, filters, sorts, facets, paging and
hostile parameters (``GET /api/queries/products/``)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.db.models import Q

from catalog.domain import product_id_for_sku
from catalog.services import product_rename
from projections.search import PRICE_BANDS
from tests.givens import project, register
from tests.search_cases import CASES, CATALOG, check

pytestmark = pytest.mark.django_db
URL = "/api/queries/products/"


@pytest.fixture
def catalog(event_store):
    for sku, name, price, stock, category in CATALOG:
        register(sku, name, price=price, stock=stock, category=category)
    project()


@pytest.fixture(params=["kept term counts", "kept counts, ranked page", "one statement",
                        "group by, then a page query", "by prefixes"])
def plan(request, monkeypatch):
    """Every way a search with ``q`` is answered on PostgreSQL: a ``q`` that begins one
    lexeme by its kept counts and, in relevance order (filtered by category at most),
    its kept postings, else a page's query (made to serve every such search in the
    second); else up to ``FEW_AT_ONCE`` matches by one statement, above it by a GROUP
    BY and a page's query. The last two are made to serve every ``q`` here. The first
    four look a word that begins a few lexemes up as them; the last looks up every word
    as its prefix."""
    from projections import search

    if request.param == "kept counts, ranked page":
        monkeypatch.setattr(search, "POSTED", False)
    elif request.param != "kept term counts":
        monkeypatch.setattr(search, "term_facets", lambda search, position_of, window=None: None)
    if request.param == "group by, then a page query":
        monkeypatch.setattr(search, "FEW_AT_ONCE", 0)
    if request.param == "by prefixes":
        monkeypatch.setattr(search, "EXPANDED", 0)
    return request.param


def skus(client, **params) -> list[str]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return [row["sku"] for row in response.json()["results"]]


def test_every_relevance_case_finds_what_a_shopper_expects(client_for, catalog, plan):
    client = client_for()
    assert check(lambda params: skus(client, **params)) == []
    assert len(CASES) >= 10


def test_a_renamed_product_is_found_by_its_new_name_and_a_typo_of_it(client_for, catalog):
    product_rename(product_id=product_id_for_sku("LAMP-9"), name="Reading light")
    project()
    client = client_for()
    assert skus(client, q="reading") == ["LAMP-9"]
    assert skus(client, q="lihgt") == ["LAMP-9"]


def expected_facets(*, q_skus=None, category=None, low=None, high=None, in_stock=False):
    """The facets computed by hand from ``CATALOG``: each without its own filter."""
    rows = [
        (sku, Decimal(price), stock, cat) for sku, _n, price, stock, cat in CATALOG
        if (q_skus is None or sku in q_skus) and (not in_stock or stock > 0)
    ]

    def in_price(price):
        return (low is None or price >= low) and (high is None or price <= high)

    per_category: dict[str, int] = {}
    for _sku, price, _stock, cat in rows:
        if in_price(price):
            per_category[cat] = per_category.get(cat, 0) + 1
    bands = []
    for band_low, band_high in PRICE_BANDS:
        count = sum(1 for _s, price, _st, cat in rows
                    if (category is None or cat == category) and price >= band_low
                    and (band_high is None or price < band_high))
        bands.append({"min": str(band_low), "max": band_high and str(band_high),
                      "count": count})
    return {
        "category": [{"value": v, "count": n}
                     for v, n in sorted(per_category.items(), key=lambda kv: (-kv[1], kv[0]))],
        "price": bands,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"category": "kitchen"}, {"category": "kitchen"}),
        ({"min_price": "10", "max_price": "30"}, {"low": Decimal(10), "high": Decimal(30)}),
        ({"category": "clothing", "min_price": "20"}, {"category": "clothing",
                                                        "low": Decimal(20)}),
        ({"in_stock": "true", "category": "kitchen", "max_price": "15"},
         {"in_stock": True, "category": "kitchen", "high": Decimal(15)}),
        ({"q": "blue", "min_price": "15"},
         {"q_skus": {"MUG-1", "BOWL-1"}, "low": Decimal(15)}),
        ({"q": "medium", "category": "clothing", "in_stock": "true", "max_price": "30"},
         {"q_skus": {"TEE-M", "HOOD-M"}, "category": "clothing", "in_stock": True,
          "high": Decimal(30)}),
    ],
)
def test_facets_count_the_filtered_set_without_their_own_filter(
    client_for, catalog, params, expected, plan
):
    body = client_for().get(URL, params).json()
    assert body["facets"] == expected_facets(**expected)


# "mug" is one: PostgreSQL parses the SKU "MUG-1" as "mug" and "-1".
ONE_LEXEME = ["blue", "blu", "mug", "lamp", "medium", "kitchen", "clothing", "stee", "noteb",
              "logo", "zip", "a5", "dotted"]


def test_a_word_that_begins_one_lexeme_is_counted_from_the_kept_counts(catalog):
    """``term_facets`` answers for each word that begins one lexeme, under every
    combination of filters whose price is on band edges, with the GROUP BY's facets and
    number of matches; for any other ``q`` or price filter it leaves the count to them."""
    from projections.models import ProductCatalog
    from projections.search import Search, _match, facets, term_facets

    answered = 0
    for q, category, (low, high), in_stock in itertools.product(
        ONE_LEXEME, [None, "kitchen", "clothing", "garden"],
        [(None, None), (Decimal(10), None), (Decimal(10), Decimal("49.99")),
         (Decimal(5), Decimal(30))],
        [False, True],
    ):
        search = Search(q=q, category=category, min_price=low, max_price=high,
                        in_stock=in_stock)
        products = ProductCatalog.objects.all()
        if in_stock:
            products = products.filter(stock_available__gt=0)
        price = Q()
        if low is not None:
            price &= Q(price__gte=low)
        if high is not None:
            price &= Q(price__lte=high)
        matched = _match(search).rows()  # among the rows the search looks in
        assert set(matched.values_list("pk", flat=True)) <= set(
            products.values_list("pk", flat=True)), search
        counted = facets(matched, Q(category=category) if category else Q(), price)[:2]
        kept = term_facets(search, None)
        if low == Decimal(5):  # cuts through a band
            assert kept is None, search
        else:
            assert kept is not None and kept[:2] == counted, search
            answered += 1
    assert answered == len(ONE_LEXEME) * 4 * 3 * 2
    # Several lexemes ("tee", "tee-s", "tee-m"), none, a typo, two words, syntax.
    for q in ["tee", "t", "b", "xylophone", "mgu", "blue mug", "pen-3", "ñandú", '"mug"']:
        assert term_facets(Search(q=q), None) is None, q


# sku, name, category: "steel" up to four times in a product (SKU and name), "pan" up
# to three times; ranks that differ, and ties broken by SKU.
POSTED_CATALOG = [
    ("POT-1", "Steel pot", "kitchen"),
    ("STEEL-2", "Steel steel steel pan", "kitchen"),
    ("PAN-3", "Pan of steel and more steel", "outdoor"),
    ("PAN-4", "Copper pan", "kitchen"),
    ("STEEL-5", "Steel", ""),
    ("WOK-6", "Steel wok", "outdoor"),
    ("POT-7", "Copper pot, steel lid", "kitchen"),
    ("PAN-8", "Pan pan", ""),
]


def test_a_word_that_begins_one_lexeme_is_paged_from_its_postings_as_ranked(
    event_store, monkeypatch
):
    """A relevance search whose ``q`` begins one lexeme (filtered by category at most)
    reads its page from ``CatalogPosting``: the same rows, in the same order, as the
    page ranked over every match, at every window, with the same facets; the search
    statements read the postings, not the ranked catalog."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from projections import search as search_module
    from projections.search import Search, posted, search_products, term_facets
    from shop.databases import serving

    for sku, name, category in POSTED_CATALOG:
        register(sku, name, category=category)
    project()

    def read(search: Search, window: tuple[int, int]) -> tuple[list, dict, list[str]]:
        with CaptureQueriesContext(connections[serving()]) as statements:
            found = search_products(search, window=window)
            offset, size = window
            rows = found.rows.values("product_id", "document")[offset:offset + size + 1]
        return ([(row["product_id"], row["document"]) for row in rows], found.facets,
                [query["sql"] for query in statements.captured_queries])

    compared = 0
    for q, category, window in itertools.product(
        ["steel", "stee", "s", "pan", "copper", "cop", "kitchen", "lid"],
        [None, "kitchen", "outdoor", "", "garden"], [(0, 2), (2, 2), (4, 3), (0, 20)],
    ):
        search = Search(q=q, category=category)
        monkeypatch.setattr(search_module, "POSTED", True)
        assert posted(search) and term_facets(search, None) is not None, search
        rows, facets, statements = read(search, window)
        assert any("catalogposting" in sql for sql in statements), statements
        monkeypatch.setattr(search_module, "POSTED", False)
        ranked_rows, ranked_facets, ranked_statements = read(search, window)
        assert not any("catalogposting" in sql for sql in ranked_statements)
        assert (rows, facets) == (ranked_rows, ranked_facets), (search, window)
        compared += bool(rows)
    assert compared > 50
    # The ranks decide: SKU order alone would put POT-1 first.
    skus_of = {product_id_for_sku(sku): sku for sku, *_ in POSTED_CATALOG}
    monkeypatch.setattr(search_module, "POSTED", True)
    first = [skus_of[row["product_id"]] for row in
             search_products(Search(q="steel"), window=(0, 20)).rows[0:20]]
    assert first[:2] == ["STEEL-2", "PAN-3"] and sorted(first) != first
    # A price filter, in stock or another order: the page is ranked or sorted as before.
    for search in [Search(q="steel", in_stock=True), Search(q="steel", min_price=Decimal(1)),
                   Search(q="steel", sort="price"), Search(q="steel red")]:
        assert not (posted(search) and term_facets(search, None))


def test_a_search_without_q_reads_its_counts_and_window_in_one_statement(catalog):
    """PostgreSQL: without ``q``, one statement reads the kept counts, the rows at the
    window and the position: at every window, sort and filter, the rows of the
    catalog's query in that order and the facets of the kept counts (as SQLite reads
    them, by two statements)."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from projections.models import ProductCatalog
    from projections.pages import StoredRows
    from projections.search import (
        ORDER_SQL,
        SORTS,
        Search,
        facets_without_q,
        price_filter,
        search_products,
    )
    from shop.databases import serving

    compared = 0
    for sort, category, (low, high), in_stock, (offset, size) in itertools.product(
        [None, *SORTS], [None, "kitchen", "clothing", "", "garden"],
        [(None, None), (Decimal(10), None), (Decimal(10), Decimal("49.99")),
         (Decimal(5), Decimal(30))],
        [False, True], [(0, 2), (2, 3), (0, 20)],
    ):
        search = Search(category=category, min_price=low, max_price=high,
                        in_stock=in_stock, sort=sort)
        with CaptureQueriesContext(connections[serving()]) as statements:
            found = search_products(search, window=(offset, size),
                                    position_of="product_catalog")
            rows = found.rows.values("product_id", "document")[offset:offset + size + 1]
        assert len(statements) == (1 if low != Decimal(5) else 2), search  # + a count
        products = ProductCatalog.objects.all()
        if in_stock:
            products = products.filter(stock_available__gt=0)
        category_filter = Q(category=category) if category is not None else Q()
        expected = StoredRows.of(products.filter(category_filter & price_filter(search)),
                                 order=(ORDER_SQL[search.order], ()))
        assert rows == expected.values("product_id", "document")[offset:offset + size + 1]
        assert found.facets == facets_without_q(search, products, price_filter(search))
        assert found.position > 0
        compared += bool(rows)
    assert compared > 300


def begun_query(word: str) -> str:
    """The ``tsquery`` that :func:`projections.search.begun` makes of ``word``, as text."""
    from django.db import connections

    from projections.search import begun
    from shop.databases import serving

    sql, params = begun(word)
    with connections[serving()].cursor() as cursor:
        cursor.execute(f"SELECT ({sql})::text", params)
        return cursor.fetchone()[0]


def test_a_word_that_begins_a_few_lexemes_is_looked_up_as_them(catalog, monkeypatch):
    """``begun`` ORs the lexemes a word begins (up to ``EXPANDED``), else takes the word
    as a prefix; a search by them finds the same rows, in the same order, with the same
    facets, as by the prefixes."""
    from projections import search
    from projections.search import Search, search_products

    assert begun_query("blu") == "'blue'"
    assert begun_query("no") == "'note' | 'note-a5' | 'notebook'"
    assert begun_query("t") == "'t' | 't-shirt' | 'tee' | 'tee-m' | 'tee-s'"
    assert begun_query("qwz") == "'qwz':*"  # begins none
    with monkeypatch.context() as patched:
        patched.setattr(search, "EXPANDED", 4)
        assert begun_query("t") == "'t':*"  # begins five

    def found(q: str) -> tuple[list, dict]:
        result = search_products(Search(q=q), window=(0, 50))
        return [row["product_id"] for row in result.rows.values("product_id")[0:50]], (
            result.facets)

    queries = ["blu", "t", "blue mu", "steel wat", "no", "logo t", "t-shirt", "m", "zip"]
    by_lexemes = {q: found(q) for q in queries}
    monkeypatch.setattr(search, "EXPANDED", 0)
    assert by_lexemes == {q: found(q) for q in queries}
    assert all(rows for rows, _facets in by_lexemes.values())


def test_a_lexeme_is_looked_up_as_it_is_stored(catalog):
    """A lexeme with a quote or a backslash (``CatalogTerm`` holds what the text index
    holds) is one operand of the ``tsquery``, matched exactly."""
    from django.db import connections

    from projections.models import CatalogTerm
    from projections.search import begun
    from shop.databases import serving

    for lexeme in ["zed's", "zed\\x", "zed'\\"]:
        CatalogTerm.objects.create(lexeme=lexeme, category="", band=0, in_stock=True, count=1)
    sql, params = begun("zed")
    with connections[serving()].cursor() as cursor:
        cursor.execute(
            f"SELECT l, array_to_tsvector(ARRAY[l]) @@ ({sql}) FROM unnest(%s::text[]) AS l",
            [*params, ["zed's", "zed\\x", "zed'\\", "zed", "zeds"]],
        )
        matched = dict(cursor.fetchall())
    assert matched == {"zed's": True, "zed\\x": True, "zed'\\": True, "zed": False,
                       "zeds": False}


def test_the_plain_list_keeps_its_shape_without_facets(client_for, catalog):
    body = client_for().get(URL).json()
    assert set(body) == {"next", "previous", "results"}
    assert [row["sku"] for row in body["results"]] == sorted(s for s, *_ in CATALOG)


def test_a_search_read_in_one_statement_holds_the_window_it_read(event_store):
    """Up to ``FEW_AT_ONCE`` matches, one statement reads the facets and the window's
    rows (offset and size, and one more: is there a next page); slicing past them is
    an error unless no row follows them."""
    from projections.search import Ranked, Search, search_products

    for i in range(6):
        register(f"CUP-{i}", f"Cup number {i}", price=f"{i + 1}.00")
    project()
    # Two words: one word that begins one lexeme is counted from CatalogTerm instead.
    found = search_products(Search(q="cup number", sort="price"), window=(2, 2))
    assert isinstance(found.rows, Ranked) and found.matched == 6
    assert [row["product_id"] for row in found.rows.values("product_id")[2:5]] == [
        product_id_for_sku(f"CUP-{i}") for i in (2, 3, 4)]
    for outside in (slice(1, 3), slice(2, 6)):
        with pytest.raises(IndexError):
            found.rows[outside]
    last = search_products(Search(q="cup number", sort="price"), window=(4, 20))
    assert [row["product_id"] for row in last.rows[4:30]] == [
        product_id_for_sku(f"CUP-{i}") for i in (4, 5)]


@pytest.mark.parametrize("sort", ["price", "relevance"])  # ranks equal: then by SKU
def test_search_results_page_with_next_and_previous(client_for, event_store, plan, sort):
    for i in range(45):
        register(f"CUP-{i:02}", f"Cup number {i}", price=f"{i + 1}.00")
    project()
    client = client_for()
    seen, url, pages = [], URL + f"?q=cup&sort={sort}", 0
    while url:
        body = client.get(url).json()
        seen += [row["sku"] for row in body["results"]]
        pages += 1
        if pages == 2:
            back = client.get(body["previous"]).json()
            assert [r["sku"] for r in back["results"]] == seen[:20]
        url = body["next"]
    assert pages == 3
    assert seen == [f"CUP-{i:02}" for i in range(45)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "popularity"}, "sort"),
        ({"sort": ""}, "sort"),
        ({"min_price": "20", "max_price": "10"}, "min_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"max_price": "NaN"}, "max_price"),
        ({"max_price": "1e999"}, "max_price"),
        ({"q": "x" * 201}, "q"),
        ({"q": "   "}, "q"),
        ({"q": ""}, "q"),
        ({"search": "  "}, "search"),
        ({"q": "mug\x00"}, "q"),
        ({"category": "kit\x00chen"}, "category"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"q": "mug", "cursor": "not-a-cursor"}, "cursor"),
        ({"category": "x" * 101}, "category"),
    ],
)
def test_hostile_search_parameters_are_400_naming_the_field(client_for, catalog, params, field):
    response = client_for().get(URL, params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"], body


def test_valid_parameters_are_validated_once_and_errors_every_time(client_for, catalog):
    """A process keeps the validated values of a valid set of parameters (bounded);
    an invalid set is never kept: each time it is 400 again."""
    from projections.apis import VALIDATED_CACHE_SIZE, _validated

    _validated.cache_clear()
    client = client_for()
    first = client.get(URL, {"q": "mug", "category": "kitchen", "min_price": "5"})
    again = client.get(URL, {"q": "mug", "category": "kitchen", "min_price": "5"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["results"]
    kept = _validated.cache_info()
    assert kept.hits >= 1 and kept.maxsize == VALIDATED_CACHE_SIZE
    for _ in range(2):
        refused = client.get(URL, {"q": "mug", "min_price": "20", "max_price": "10"})
        assert refused.status_code == 400 and "min_price" in refused.json()["errors"]
    assert _validated.cache_info().currsize == kept.currsize
    # Another value is another set: validated on its own.
    assert client.get(URL, {"q": "mug", "category": "kitchen", "min_price": "-5"}
                      ).status_code == 400


@pytest.mark.parametrize(
    "q",
    ["'", '"', "\\", "mug:*", "a & b | !c", "(((", "<->", "%", "_", "-mug", "or", "ñandú",
     "🙂", "'; DROP TABLE x; --", "a" * 200],
)
def test_query_syntax_in_q_never_breaks_the_search(client_for, catalog, q):
    response = client_for().get(URL, {"q": q})
    assert response.status_code == 200, response.content


def test_a_new_product_is_found_at_once_and_its_typos_once_the_cache_expires(
    client_for, catalog, monkeypatch
):
    """The vocabulary answers a process caches (``VOCABULARY_CACHE_SECONDS``) never hide
    a new product from its own words; only a typo of a word that only it has waits."""
    from projections import search

    client = client_for()
    assert skus(client, q="trmpet") == []  # cached: no catalog word is one edit away
    register("HORN-1", "Brass trumpet", price="300.00", stock=1, category="music")
    project()
    assert skus(client, q="trumpet") == ["HORN-1"]
    assert skus(client, q="trump") == ["HORN-1"]
    assert skus(client, q="trmpet") == []  # the cached answer, for a while
    later = search._clock() + search.VOCABULARY_CACHE_SECONDS + 1
    monkeypatch.setattr(search, "_clock", lambda: later)
    assert skus(client, q="trmpet") == ["HORN-1"]


@pytest.mark.parametrize("few_matches", [0, 5000])
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price", ["TEE-S", "TEE-M", "HOOD-M"]),
        ("-price", ["HOOD-M", "TEE-M", "TEE-S"]),
        ("name", ["TEE-M", "TEE-S", "HOOD-M"]),
    ],
)
def test_q_sorted_by_a_column_is_in_that_order_whichever_plan_serves_it(
    client_for, catalog, monkeypatch, plan, few_matches, sort, expected
):
    """Up to ``FEW_MATCHES`` matches a column sort of the page's query goes through an
    expression no index has (the matches first, then the sort); above it through the
    column's index."""
    from projections import search

    monkeypatch.setattr(search, "FEW_MATCHES", few_matches)
    assert skus(client_for(), q="clothing", sort=sort) == expected


def test_more_matches_than_one_statement_reads_are_counted_and_paged_exactly(
    client_for, event_store, monkeypatch
):
    """Past ``FEW_AT_ONCE`` matches the search takes the other way, with the same
    answer."""
    from projections import search

    for i in range(12):
        register(f"CUP-{i:02}", f"Cup number {i}", price=f"{i * 5 + 1}.00",
                 category="kitchen" if i % 3 else "dining")
    project()
    client = client_for()
    params = {"q": "cup", "category": "kitchen", "sort": "-price"}
    monkeypatch.setattr(search, "FEW_AT_ONCE", 12)
    one = client.get(URL, params).json()
    monkeypatch.setattr(search, "FEW_AT_ONCE", 11)
    other = client.get(URL, params).json()
    monkeypatch.setattr(search, "FEW_AT_ONCE", 12)
    remembered = client.get(URL, params).json()  # the way remembered: broad
    assert one == other == remembered
    assert [row["sku"] for row in one["results"]] == [
        f"CUP-{i:02}" for i in range(11, -1, -1) if i % 3]
    assert one["facets"]["category"] == [{"value": "kitchen", "count": 8},
                                         {"value": "dining", "count": 4}]


@pytest.mark.parametrize(
    ("q", "plain"),
    [("blue mug", True), ("Blue  MUG 42", True), ("ñandú", True), ("mug-1", False),
     ("red or blue", False), ('"blue mug"', False), ("-mug", False), ("x²", False),
     ("mug:*", False)],
)
def test_only_plain_words_drop_the_websearch_query_from_the_match(q, plain):
    from projections.search import plain_words

    assert plain_words(q) is plain


@pytest.mark.parametrize(
    "params",
    [{"q": "mug"}, {"q": "mug", "in_stock": "true"}, {"q": "xylophone"}, {"q": "mgu"},
     {"category": "kitchen"}],
)
def test_a_search_says_the_catalog_position_it_read(client_for, catalog, plan, params):
    """Read in the search's own statement (few matches), or before its statements."""
    from projections.models import Checkpoint

    position = Checkpoint.objects.position_of("product_catalog")
    assert position > 0
    response = client_for().get(URL, params)
    assert response.status_code == 200
    assert response["X-Projection-Position"] == str(position)
