"""Product search: ranked full-text search, filters, sorts and facet counts over the
catalog read model (``ProductCatalog``).

Why columns of the catalog rather than a read model of its own: search shows exactly
the catalog's rows, fed by the same events; a second table would only copy them. The
search structures are the database's own, kept by the database from the row: on
PostgreSQL a generated ``tsvector`` column with a GIN index over the category and it
(``btree_gin``, migration 0012: a search within a category finds its matches in the
index) and a trigram GIN index on the generated ``search_text``; on SQLite an FTS5
table kept by triggers (migration 0009). The projector adds the vocabulary
(``CatalogWord``) and counts (``CatalogFacet`` per category, price band and stock; on
PostgreSQL ``CatalogTerm``, the same per lexeme), and on PostgreSQL the postings
(``CatalogPosting``: each product's lexemes, with its rank for each alone).

How ``q`` matches, on PostgreSQL:

1. ``websearch_to_tsquery('simple', q)`` (quotes, ``or``; SKUs such as ``MUG-1``), OR
2. every word of ``q`` as a prefix (``mu`` finds "mug") or, for a word of 3+ letters the
   catalog does not have, any catalog word one edit away (``mgu`` finds "mug"): the
   edits are listed here and looked up in ``CatalogWord`` with one indexed query.
3. Only when 1 and 2 find nothing: trigram similarity of ``q`` to the product's text
   (``pg_trgm``'s ``%`` operator and index), best first.

Ranking: ``ts_rank`` of (1) counted twice plus ``ts_rank`` of (2), so what was typed
outranks what it was corrected to; ties by SKU. SQLite answers (2) with FTS5 ``MATCH``
(prefix queries and the same corrections) ranked by FTS5's ``bm25``; it has no (1)'s
query syntax and no trigram fallback.

How a search with ``q`` is read on PostgreSQL (the answer is the same every way):

- A ``q`` of one word that begins one lexeme of the catalog (``stee`` of "steel"), with
  a price filter on band edges if any: the facets and the number of matches from that
  lexeme's ``CatalogTerm`` rows (:func:`term_facets`). Flat as the catalog grows, where
  counting a broad prefix's matches is not. In relevance order, filtered by category
  at most (:func:`posted`), the same statement reads the page from the lexeme's
  ``CatalogPosting`` rows, in order from an index: 21 entries, not a rank for each of
  the 11,000 products ``steel`` matches at 100,000. Else the page's query.
- Else, up to ``FEW_AT_ONCE`` (1,000) matches: one statement reads every match's facet
  columns in the search's order, the documents of the page asked for, and the catalog's
  position (:func:`_few`). The facets are counted here.
- More (a broad prefix of several lexemes, such as ``bl``): a GROUP BY over the matches
  for the facets (with the position), then the page's query. A process remembers for
  ``BROAD_SECONDS`` that a ``q`` was broad and skips the first statement.
- A ``q`` of plain words (no quotes, ``-``, ``or``, punctuation) is looked up by its
  prefix query alone: ``websearch_to_tsquery`` of it finds nothing more.
- A word that begins only a few of the catalog's lexemes (``navy``, ``stee``) is looked
  up in the text index as those lexemes: exact entries, which the index intersects by
  skipping, instead of a prefix, whose every entry it collects first. The search's own
  statement lists them from ``CatalogTerm`` (:func:`begun`), so they are the lexemes of
  the very rows it reads. The same rows and ranks as by the prefixes.
- The statements written here as SQL (:func:`_few`, :func:`term_facets`, and for a
  search without ``q`` :func:`_without_q`) bind their parameters on the server
  (``shop.databases.prepared_cursor``): a connection prepares each after a few runs,
  and PostgreSQL plans it once. So nothing in them is worked out per row from a
  parameter (the rank's queries are subqueries, made once).
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from projections.models import (
    CatalogFacet,
    CatalogPosting,
    CatalogTerm,
    CatalogWord,
    Checkpoint,
    ProductCatalog,
)
from projections.pages import StoredRows
from shop.databases import prepared_cursor, read_connection, serving

WORD = re.compile(r"[^\W_]+")
#: Words shorter than this are only prefixes, never corrected (too many neighbours).
MIN_CORRECTED = 3
#: At most this many words of ``q`` are used (a longer query searches its first ones).
MAX_WORDS = 8
EDIT_ALPHABET = string.ascii_lowercase + string.digits
CENT = Decimal("0.01")

#: The price facet's bands: [min, max), the last one open-ended.
PRICE_BANDS: list[tuple[Decimal, Decimal | None]] = [
    (Decimal("0.00"), Decimal("10.00")),
    (Decimal("10.00"), Decimal("25.00")),
    (Decimal("25.00"), Decimal("50.00")),
    (Decimal("50.00"), Decimal("100.00")),
    (Decimal("100.00"), None),
]

SORTS = ("relevance", "price", "-price", "name", "-created")


def words(*texts: str) -> set[str]:
    """The vocabulary words of ``texts``: lower-cased runs of letters and digits, 3+ long,
    not only digits (a number is not corrected: 1243 is not a typo of 1234)."""
    return {w for text in texts for w in WORD.findall(text.lower())
            if len(w) >= MIN_CORRECTED and not w.isdigit()}


def edits(word: str) -> set[str]:
    """Every string one edit (delete, swap of neighbours, replace, insert) from ``word``."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    alphabet = set(EDIT_ALPHABET) | set(word)
    return (
        {a + b[1:] for a, b in splits if b}
        | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        | {a + c + b[1:] for a, b in splits if b for c in alphabet}
        | {a + c + b for a, b in splits for c in alphabet}
    ) - {word}


#: How long a process reuses what the vocabulary said of a query word: a product
#: registered since is found at once by its words, but a typo of a word that only it
#: has is corrected up to this many seconds later.
VOCABULARY_CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, list[str] | None]] = {}
_CACHE_SIZE = 10_000
_clock = time.monotonic


def corrections(query_words: list[str]) -> dict[str, list[str]]:
    """:func:`lookup_corrections`, each word's answer reused for
    ``VOCABULARY_CACHE_SECONDS`` (``None``: the word is known, not corrected)."""
    now = _clock()
    answers: dict[str, list[str] | None] = {}
    missing = []
    for word in query_words:
        cached = _cache.get(word)
        if cached is not None and cached[0] > now:
            answers[word] = cached[1]
        else:
            missing.append(word)
    if missing:
        found = lookup_corrections(missing)
        if len(_cache) > _CACHE_SIZE:
            _cache.clear()
        for word in missing:
            answers[word] = found.get(word)
            _cache[word] = (now + VOCABULARY_CACHE_SECONDS, answers[word])
    return {word: fixes for word, fixes in answers.items() if fixes is not None}


def forget_vocabulary() -> None:
    """Empty this process's cache of vocabulary answers (tests: a new catalog)."""
    _cache.clear()
    _broad.clear()


def lookup_corrections(query_words: list[str]) -> dict[str, list[str]]:
    """For each word of 3+ characters that is neither a catalog word nor the start of
    one (``stee`` of "steel" is a prefix, not a typo): the catalog words one edit away.
    One query over ``CatalogWord``'s primary key."""
    wanted = {w: edits(w) for w in query_words if len(w) >= MIN_CORRECTED and not w.isdigit()}
    if not wanted:
        return {}
    lookup = sorted(set(wanted).union(*wanted.values()))
    table = CatalogWord._meta.db_table
    if read_connection.vendor == "postgresql":
        # One array parameter: binding hundreds of IN placeholders costs more than the
        # index lookups themselves. A query word that starts a catalog word counts as
        # known ('~' sorts after every ASCII letter and digit).
        with connections[serving()].cursor() as cursor:
            cursor.execute(
                f"SELECT word FROM {table} WHERE word = ANY(%s) UNION ALL "
                f"SELECT w FROM unnest(%s::text[]) AS w WHERE EXISTS (SELECT 1 FROM {table} "
                "WHERE word > w AND word < w || '~')",
                [lookup, list(wanted)],
            )
            known = {row[0] for row in cursor.fetchall()}
    else:
        known = set(CatalogWord.objects.filter(word__in=lookup).values_list("word", flat=True))
        known |= {w for w in wanted if CatalogWord.objects.filter(word__startswith=w).exists()}
    return {
        w: sorted(candidates & known)
        for w, candidates in wanted.items()
        if w not in known
    }


@dataclass(frozen=True)
class Search:
    """A validated product search (``ProductSearchSerializer``)."""

    q: str | None = None
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool = False
    sort: str | None = None

    @property
    def order(self) -> str:
        if self.sort and (self.sort != "relevance" or self.q):
            return self.sort
        return "relevance" if self.q else "sku"


@dataclass
class Results:
    """One search's rows (ordered, not yet paged) and its facet counts."""

    rows: QuerySet[ProductCatalog] | StoredRows | Ranked
    facets: dict[str, list[dict[str, Any]]]
    #: How many rows ``q`` matched, when known (filters aside).
    matched: int | None = None
    #: The position of ``search_products``' ``position_of``, if asked.
    position: int | None = None


def search_products(
    search: Search, window: tuple[int, int] = (0, 20), position_of: str | None = None
) -> Results:
    """The products ``search`` finds, in its order, with the facets of the filtered set.

    ``window``: the offset and size of the page wanted (a statement that reads the
    matches may read that page's documents too). ``position_of``: a projection whose
    position ``Results.position`` gives, read no later than the rows and counts (in
    their statement, or before them)."""
    postgresql = read_connection.vendor == "postgresql"
    kept = term_facets(search, position_of, window) if search.q else None
    if kept is not None and kept.page is not None and kept.matched:  # its page is kept too
        return Results(rows=kept.page, facets=kept.facets, matched=kept.matched,
                       position=kept.position)
    if not search.q and postgresql:
        return _without_q(search, window, position_of)
    if not search.q:  # SQLite: the facets, then the rows' query
        products, price = searched(search), price_filter(search)
        counted, position = _facets_without_q(search, products, price, position_of)
        rows = StoredRows.of(products.filter(category_filter(search) & price),
                             order=(ORDER_SQL[search.order], ()))
        return Results(rows=rows, facets=counted, position=position)
    match = _match(search)
    if not postgresql:
        return _counted_then_paged(match, search, position_of)[0]
    return _search_postgresql(match, search, window, position_of, kept)


def searched(search: Search) -> QuerySet[ProductCatalog]:
    """The catalog's rows ``search`` looks in: every product, or those in stock."""
    products = ProductCatalog.objects.all()
    if search.in_stock:
        products = products.filter(stock_available__gt=0)
    return products


def category_filter(search: Search) -> Q:
    """The category filter of ``search`` (``Q()`` without one)."""
    return Q(category=search.category) if search.category is not None else Q()


def price_filter(search: Search) -> Q:
    """The price filter of ``search`` (``Q()`` without one)."""
    price = Q()
    if search.min_price is not None:
        price &= Q(price__gte=search.min_price)
    if search.max_price is not None:
        price &= Q(price__lte=search.max_price)
    return price


def _search_postgresql(
    match: Match, search: Search, window: tuple[int, int], position_of: str | None,
    kept: Kept | None,
) -> Results:
    """:func:`search_products` on PostgreSQL, for the rows of ``match``: by the kept
    counts (``kept``: :func:`term_facets`' answer), one statement, or a GROUP BY and a
    page's query; the trigram fallback if nothing matched."""
    broad = (search.q, search.in_stock)
    if kept is not None:  # one lexeme: its counts are kept
        found, total = _counted_then_paged(match, search, position_of, kept[:3])
    elif (found := None if _broad.get(broad, 0.0) > _clock() else _few(
            match, search, window, position_of)) is None:
        # More than FEW_AT_ONCE matches.
        if len(_broad) > _CACHE_SIZE:
            _broad.clear()
        _broad[broad] = _clock() + BROAD_SECONDS
        found, total = _counted_then_paged(match, search, position_of)
    else:
        total = found.matched
    if total:
        return found
    # The first statement's position (read before this one) holds for this one too.
    position = found.position
    match = _similar(search)
    found = _few(match, search, window, None)
    if found is None:
        found = _counted_then_paged(match, search)[0]
    found.position = position
    return found


#: Whether a search that :func:`posted` names reads its page from ``CatalogPosting``
#: (tests compare it with the page ranked from the catalog).
POSTED = True


def posted(search: Search) -> bool:
    """Whether the page of ``search``, when its ``q`` begins one lexeme only, is read
    from ``CatalogPosting`` with its kept counts (:func:`term_facets`): in relevance
    order, filtered by category at most.

    The same rows in the same order as the ranked page (:func:`_ranked_page`): its rank
    is ``ts_rank`` of what was typed, twice, plus ``ts_rank`` of the prefix. The prefix
    begins that lexeme alone, so its rank is the posting's (``ts_rank`` of the lexeme).
    What was typed is either the lexeme (3 times the posting's rank in all) or no
    lexeme of the catalog at all (0): an order by the posting's rank, then the SKU."""
    return (POSTED and search.order == "relevance" and not search.in_stock
            and search.min_price is None and search.max_price is None)


def _read_position(name: str | None) -> int | None:
    return None if name is None else Checkpoint.objects.position_of(name)


def _position_sql(name: str | None) -> tuple[str, tuple]:
    """A scalar subquery of the position of projection ``name`` (0 before its row)."""
    if name is None:
        return "NULL::bigint", ()
    return Checkpoint.objects.position_sql(name)


def _with_position(
    sql: str, params: list[Any], columns: list[str], position_of: str | None, *,
    prepared: bool,
) -> tuple[int | None, list[tuple]]:
    """The ``columns`` of the rows of ``sql`` (the first column never NULL), and the
    position of ``position_of``, read in the same statement on PostgreSQL (else first).
    ``prepared``: through ``prepared_cursor`` (SQL that repeats no parameter in two
    places PostgreSQL must find equal; not the ORM's GROUP BY of an expression)."""
    picked = ", ".join(f'found."{c}"' for c in columns)
    with (prepared_cursor() if prepared else connections[serving()].cursor()) as cursor:
        if position_of is None or read_connection.vendor != "postgresql":
            position = _read_position(position_of)
            cursor.execute(f"SELECT {picked} FROM ({sql}) AS found", params)
            return position, cursor.fetchall()
        position_sql, position_params = _position_sql(position_of)
        # One row even when there is none (it carries the position): a LEFT JOIN.
        cursor.execute(
            f"SELECT read_position, {picked} FROM (SELECT {position_sql} AS read_position) "
            f"AS checkpoint LEFT JOIN ({sql}) AS found ON true",
            [*position_params, *params],
        )
        found = cursor.fetchall()
    return found[0][0], [row[1:] for row in found if row[1] is not None]


def _counted_then_paged(
    match: Match, search: Search, position_of: str | None = None,
    counted: tuple[dict[str, list], int, int | None] | None = None,
) -> tuple[Results, int]:
    """The facets by one GROUP BY over the matched set (unless ``counted`` already:
    :func:`term_facets`), and the rows as a query (paged later), for any number of
    matches; and the number of matches."""
    category, price = category_filter(search), price_filter(search)
    counted, total, position = counted or facets(match.rows(), category, price, position_of)
    if search.order == "relevance" and read_connection.vendor == "postgresql":  # as SQL
        return Results(rows=_ranked_page(match, search), facets=counted,
                       position=position), total
    rows = match.rows().filter(category & price)
    if search.order == "relevance":  # else no row's rank is computed
        rows = rows.annotate(rank=match.rank)
    ordering = ORDERINGS[search.order]
    if (search.order in FENCED and total <= FEW_MATCHES
            and read_connection.vendor == "postgresql"):
        ordering = FENCED[search.order]
    return Results(rows=rows.order_by(*ordering), facets=counted, position=position), total


#: Up to this many matches (PostgreSQL), one statement reads them all, in the search's
#: order, with what the facets need: the facets are counted here and a page's
#: documents read by primary key, instead of a GROUP BY and a page query that each
#: look ``q`` up in the index and visit the matched rows again.
FEW_AT_ONCE = 1000

#: The order of :data:`ORDERINGS` over the columns of :func:`_few`'s subquery (the
#: catalog's own column names: a search without ``q`` orders its table by them too).
ORDER_SQL: dict[str, str] = {
    "sku": "sku, product_id",
    "relevance": "rank DESC, sku, product_id",
    "price": "price, product_id",
    "-price": "price DESC, product_id",
    "name": "name, product_id",
    "-created": "created_at DESC NULLS LAST, product_id",
}


#: A process remembers for this long that a ``q`` (with or without ``in_stock``)
#: matched more than ``FEW_AT_ONCE`` rows, and goes straight to the GROUP BY and the
#: page's query (reading the first ``FEW_AT_ONCE + 1`` matches first costs a broad
#: prefix such as ``cott``, 11,000 matches at 100,000 products, ~6 ms more). Only the
#: way is remembered, never an answer: both ways count and order the same rows.
BROAD_SECONDS = 60.0
_broad: dict[tuple[str, bool], float] = {}


def _filters_sql(search: Search) -> tuple[tuple[str, list], tuple[str, list]]:
    """The price filter and the category filter of ``search`` as SQL conditions over
    the catalog's table, each with its parameters ("true" without the filter)."""
    in_price, price_params = "true", []
    if search.min_price is not None:
        in_price, price_params = "price >= %s", [search.min_price]
    if search.max_price is not None:
        in_price = ("price >= %s AND " if price_params else "") + "price <= %s"
        price_params.append(search.max_price)
    in_category, category_params = (("category = %s", [search.category])
                                    if search.category is not None else ("true", []))
    return (in_price, price_params), (in_category, category_params)


def _few(
    match: Match, search: Search, window: tuple[int, int], position_of: str | None
) -> Results | None:
    """:func:`_counted_then_paged`'s answer from one statement, or None if more than
    ``FEW_AT_ONCE`` rows match (the statement stops reading at one more). The same
    statement counts the facets, per category and price band, and reads the rows at
    ``window`` (offset, size: the page and one more) with their documents and, with
    ``position_of``, that projection's position. Its answer is a few dozen rows however
    many products match.

    Written as SQL, not built with the ORM: building and compiling the query took
    about as long as the database took to answer it."""
    (in_price, price_params), (in_category, category_params) = _filters_sql(search)
    rank, rank_params = ((f", {match.rank.sql} AS rank", list(match.rank.params))
                         if search.order == "relevance" else ("", []))
    band, band_params = _band_sql()
    position_sql, position_params = _position_sql(position_of)
    order = ORDER_SQL[search.order]
    offset, size = window
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH matched AS MATERIALIZED (SELECT product_id, category, {band} AS band, "
            f"{in_price} AS in_price, {in_category} AS in_category, sku, price, name, "
            f"created_at{rank} FROM {_TABLE} WHERE {match.where}"
            + (" AND stock_available > 0" if search.in_stock else "")
            + " LIMIT %s) "
            # Three kinds of rows. The position and the number of matches (one row,
            # even when nothing matched):
            f"SELECT NULL::bigint, {position_sql}, (SELECT count(*) FROM matched), "
            "NULL::varchar, NULL::integer, NULL::uuid, NULL::text "
            # the counts of each category and band, in the price filter and in the
            # category filter (a facet without its own filter):
            "UNION ALL SELECT NULL, count(*) FILTER (WHERE in_price), "
            "count(*) FILTER (WHERE in_category), category, band, NULL, NULL "
            "FROM matched GROUP BY category, band "
            # and the rows of the window, numbered in the search's order:
            "UNION ALL SELECT page.n, NULL, NULL, NULL, NULL, page.product_id, c.document "
            f"FROM (SELECT product_id, row_number() OVER (ORDER BY {order}) AS n "
            f"FROM matched WHERE in_price AND in_category ORDER BY {order} "
            f"OFFSET %s LIMIT %s) AS page JOIN {_TABLE} AS c ON c.product_id = page.product_id",
            [*band_params, *price_params, *category_params, *rank_params, *match.params,
             FEW_AT_ONCE + 1, *position_params, offset, size + 1],
        )
        found = cursor.fetchall()
    # The one row with neither a number nor a category: the position and the matches.
    (_n, position, matched, *_rest), = (row for row in found if row[0] is None
                                        and row[3] is None)
    if matched > FEW_AT_ONCE:
        return None
    per_category: dict[str, int] = {}
    per_band = [0] * len(PRICE_BANDS)
    page = []
    for n, in_price_count, in_category_count, row_category, band, pk, document in found:
        if n is not None:
            page.append((n, pk, document))
        elif row_category is not None:
            per_category[row_category] = per_category.get(row_category, 0) + in_price_count
            per_band[band] += in_category_count
    return Results(
        rows=Ranked.window(page, window),
        facets=facet_lists(per_category, per_band), matched=matched, position=position,
    )


def _ranked_page(match: Match, search: Search) -> StoredRows:
    """PostgreSQL: the rows ``match`` finds within ``search``'s filters, best first, as
    one statement of SQL read a page at a time (``StoredRows``): prepared, not built
    and compiled by the ORM for every page. A relevance order ranks every row it
    finds, so its plan does not depend on how many there are, and one plan serves."""
    (in_price, price_params), (in_category, category_params) = _filters_sql(search)
    where = (f"{match.where}" + (" AND stock_available > 0" if search.in_stock else "")
             + f" AND {in_price} AND {in_category}")
    return StoredRows(
        ProductCatalog, ((where, (*match.params, *price_params, *category_params)),),
        (f"{match.rank.sql} DESC, sku, product_id", tuple(match.rank.params)),
    )


class Ranked:
    """The rows of a search's window already read, in order, by primary key: sliced (a
    page, from the window's ``offset``), the rows' ``values()`` (dicts), of those with
    the documents read already without a query, else read by primary key, in that order.
    ``complete``: no row follows them (a slice past them is empty, not unknown). Stands
    for the rows' query in ``ProductPagination.search_page``."""

    model = ProductCatalog

    def __init__(self, pks: list[Any], documents: dict[Any, str] | None = None,
                 fields: tuple[str, ...] = ("product_id", "document"), *,
                 offset: int = 0, complete: bool = True) -> None:
        self.pks = pks
        self.documents = documents or {}
        self.fields = fields
        self.offset, self.complete = offset, complete

    @classmethod
    def window(cls, rows: Iterable[tuple[int, Any, str | None]],
               window: tuple[int, int]) -> Ranked:
        """The rows a statement read at ``window`` (offset, size: the page and one
        more), each ``(n, pk, document)``, ``n`` its place in the search's order."""
        offset, size = window
        page = sorted(rows)
        return cls([pk for _n, pk, _doc in page],
                   {pk: doc for _n, pk, doc in page if doc is not None},
                   offset=offset, complete=len(page) < size + 1)

    def values(self, *fields: str) -> Ranked:
        return Ranked(self.pks, self.documents, fields, offset=self.offset,
                      complete=self.complete)

    def __getitem__(self, page: slice) -> list[dict[str, Any]]:
        start = (page.start or 0) - self.offset
        stop = None if page.stop is None else page.stop - self.offset
        if start < 0 or ((stop is None or stop > len(self.pks)) and not self.complete):
            raise IndexError(f"rows {page.start}:{page.stop} are outside the window read "
                             f"({self.offset}:{self.offset + len(self.pks)})")
        pks = self.pks[start:stop]
        if self.fields == ("product_id", "document") and all(
                pk in self.documents for pk in pks):
            return [{"product_id": pk, "document": self.documents[pk]} for pk in pks]
        if not pks:
            return []
        rows = ProductCatalog.objects.filter(pk__in=pks).values(
            *dict.fromkeys(("product_id", *self.fields)))
        by_pk = {row["product_id"]: row for row in rows}
        return [by_pk[pk] for pk in pks if pk in by_pk]


ORDERINGS: dict[str, tuple[Any, ...]] = {
    "sku": ("sku", "product_id"),
    "relevance": ("-rank", "sku", "product_id"),
    "price": ("price", "product_id"),
    "-price": ("-price", "product_id"),
    "name": ("name", "product_id"),
    "-created": (F("created_at").desc(nulls_last=True), "product_id"),
}


#: Up to this many rows matched by ``q``, a sort by a column takes the matches from the
#: text index and sorts them, rather than walking the column's index and testing each
#: row against ``q``: the planner underestimates that test and takes the walk for two
#: words (``linen pencil`` by price: 15,000 rows tested for 21, 15 ms, against 1 ms).
#: Above it (a broad prefix) the walk finds its page soon and is kept.
FEW_MATCHES = 5000
_TABLE = ProductCatalog._meta.db_table
_POSTINGS = CatalogPosting._meta.db_table
#: The same orders through an expression no index has (the same values, so the same
#: order): the planner cannot walk an index for them.
FENCED: dict[str, tuple[Any, ...]] = {
    "price": (RawSQL(f"{_TABLE}.price + 0", ()).asc(), "product_id"),
    "-price": (RawSQL(f"{_TABLE}.price + 0", ()).desc(), "product_id"),
    "name": (RawSQL(f"{_TABLE}.name || ''", ()).asc(), "product_id"),
    "-created": (RawSQL(f"{_TABLE}.created_at + interval '0'", ()).desc(nulls_last=True),
                 "product_id"),
}


class Match(NamedTuple):
    """What the ``q`` of a search matches among the rows it looks in (``searched``):
    their condition as SQL over the catalog's table (None: no row, without a query),
    and the rank expression (higher is better)."""

    search: Search
    where: str | None
    params: list[Any]
    rank: RawSQL

    def rows(self) -> QuerySet[ProductCatalog]:
        """The matched rows as a query set: built only by the paths that need one (the
        statements written as SQL take the condition alone)."""
        products = searched(self.search)
        if self.where is None:
            return products.none()
        return products.extra(where=[self.where], params=self.params)


def _match(search: Search) -> Match:
    """The rows of ``search`` that its ``q`` matches."""
    query_words = WORD.findall(search.q.lower())[:MAX_WORDS]
    fixes = corrections(query_words)
    if read_connection.vendor == "postgresql":
        return _match_postgresql(search, query_words, fixes)
    return _match_sqlite(search, query_words, fixes)


def _match_postgresql(
    search: Search, query_words: list[str], fixes: dict[str, list[str]]
) -> Match:
    # Each word: itself as a prefix, or a correction. Words are [^\W_]+: no tsquery syntax.
    def loose(words: list[str]) -> str:
        return " & ".join(
            "(" + " | ".join([f"{w}:*", *fixes.get(w, [])]) + ")" for w in words)

    q = search.q
    typed = "websearch_to_tsquery('simple', %s)"
    # Each query made once per statement (a subquery), not once per row: a prepared
    # statement's generic plan would parse the parameter again for every row it ranks.
    rank = RawSQL(
        f"ts_rank(search_vector, (SELECT {typed})) * 2 "
        "+ ts_rank(search_vector, (SELECT to_tsquery('simple', %s)))",
        (q, loose(query_words)),
    )
    # The same rows, found by exact entries of the index where a word begins a few
    # lexemes (:func:`begun`): the rank above still reads the prefixes (the same scores).
    exact = [w for w in dict.fromkeys(query_words)
             if EXPANDED and TERM.fullmatch(w) and w not in fixes]
    prefixed = [w for w in query_words if w not in exact]
    parts, params = [], []
    if prefixed or not exact:  # no word at all: the empty query, which finds nothing
        parts.append("to_tsquery('simple', %s)")
        params.append(loose(prefixed))
    for w in exact:
        sql, begun_params = begun(w)
        parts.append(sql)
        params += begun_params
    words_query = " && ".join(parts)
    if plain_words(q):
        # (1) finds nothing that (2) does not: each of its words is one of (2)'s
        # prefixes. Only (2) goes to the index, which then scans half the entries.
        return Match(search, f"search_vector @@ ({words_query})", params, rank)
    return Match(search, f"search_vector @@ ({typed} || ({words_query}))", [q, *params], rank)


#: A word of ``q`` that begins at most this many lexemes of the catalog is searched as
#: them: the text index then intersects exact entries, skipping, where a prefix (a
#: partial match) first collects every entry it begins (8,333 products for ``navy``
#: at 100,000: 2.4 ms against 0.5 for ``navy & candle``). 0: every word as a prefix.
EXPANDED = 8


#: The column ``lexeme`` as a quoted ``tsquery`` operand, taken as it is, not parsed
#: again.
QUOTED_LEXEME = r"'''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''''"


def begun(word: str) -> tuple[str, list[str]]:
    """PostgreSQL: a ``tsquery`` expression (SQL and parameters) of the lexemes of the
    catalog (``CatalogTerm``) that ``word`` (of ``TERM``'s letters) begins, OR-ed, if
    they are 1 to ``EXPANDED``; else ``word`` as a prefix. Listed by a skip scan of the
    primary key (one probe per lexeme, not one per count row), inside the statement
    that searches: the lexemes of the rows it reads, in the same snapshot."""
    terms = CatalogTerm._meta.db_table
    low, high = beginning(word)
    return (
        f"(SELECT CASE WHEN count(*) BETWEEN 1 AND {EXPANDED} "
        f"THEN string_agg({QUOTED_LEXEME}, ' | ')::tsquery ELSE to_tsquery('simple', %s) END "
        "FROM (WITH RECURSIVE found (lexeme, n) AS ("
        f"(SELECT lexeme, 1 FROM {terms} WHERE lexeme >= %s AND lexeme < %s "
        "ORDER BY lexeme LIMIT 1) "
        f"UNION ALL SELECT (SELECT t.lexeme FROM {terms} AS t WHERE t.lexeme > found.lexeme "
        "AND t.lexeme < %s ORDER BY t.lexeme LIMIT 1), found.n + 1 FROM found "
        f"WHERE found.lexeme IS NOT NULL AND found.n <= {EXPANDED}) "
        "SELECT lexeme FROM found WHERE lexeme IS NOT NULL) AS begun)",
        [f"{word}:*", low, high, high],
    )


def beginning(word: str) -> tuple[str, str]:
    """The bounds of the lexemes ``word`` (of ``TERM``'s letters) begins, in the byte
    order of ``CatalogTerm``'s key: from ``word`` to the next word of its length. A
    range, not ``LIKE 'word%'``, so that a prepared statement's generic plan still
    reads the key's index from ``word`` on."""
    return word, word[:-1] + chr(ord(word[-1]) + 1)


def plain_words(q: str) -> bool:
    """Whether ``websearch_to_tsquery('simple', q)`` is only the AND of ``q``'s words:
    no quotes, ``-``, ``or``, nor punctuation (``MUG-1`` is parsed into other tokens)."""
    tokens = q.split()
    return bool(tokens) and all(
        (t.isalpha() or (t.isascii() and t.isalnum())) and t.lower() != "or" for t in tokens
    )


def _similar(search: Search) -> Match:
    """PostgreSQL, when words found nothing: the closest texts by trigrams (a typo in a
    short word, a SKU), by the trigram index."""
    q = search.q.lower()
    return Match(search, "search_text %% %s", [q], RawSQL("similarity(search_text, %s)", (q,)))


def _match_sqlite(
    search: Search, query_words: list[str], fixes: dict[str, list[str]]
) -> Match:
    if not query_words:  # nothing to look up: no row
        return Match(search, None, [], RawSQL("0", ()))
    # FTS5 syntax: quoted strings, * for a prefix; the words are [^\W_]+ (no quotes).
    match = " AND ".join(
        "(" + " OR ".join([f'"{w}" *', *(f'"{c}"' for c in fixes.get(w, []))]) + ")"
        for w in query_words
    )
    table = ProductCatalog._meta.db_table
    # bm25 is lower for a better match: its negation ranks like PostgreSQL's.
    rank = RawSQL(
        "(SELECT -bm25(projections_productsearch) FROM projections_productsearch "
        f"WHERE projections_productsearch MATCH %s AND rowid = {table}.rowid)",
        (match,),
    )
    return Match(search, f"{table}.rowid IN (SELECT rowid FROM projections_productsearch "
                 "WHERE projections_productsearch MATCH %s)", [match], rank)


def price_band() -> Case:
    """The index in ``PRICE_BANDS`` of a row's price."""
    return Case(
        *(When(price__lt=high, then=Value(i)) for i, (_low, high) in enumerate(PRICE_BANDS)
          if high is not None),
        default=Value(len(PRICE_BANDS) - 1),
        output_field=IntegerField(),
    )


def facets(
    matched: QuerySet, category: Q, price: Q, position_of: str | None = None
) -> tuple[dict[str, list], int, int | None]:
    """Counts per category and per price band of the filtered set, each facet without
    its own filter: one GROUP BY over the set matched by ``q`` and ``in_stock``. Also
    the size of that set, and the position of ``position_of`` (:func:`_with_position`)."""
    groups = (
        matched.order_by()
        .values("category", band=price_band())
        .annotate(
            # Count of the rows in the price filter, and in the category filter.
            in_price=Count("pk", filter=price) if price else Count("pk"),
            in_category=Count("pk", filter=category) if category else Count("pk"),
            rows=Count("pk"),
        )
    )
    try:
        sql, params = groups.query.get_compiler(using=groups.db).as_sql()
    except EmptyResultSet:  # nothing can match (SQLite: a q without a word)
        return facet_lists({}, [0] * len(PRICE_BANDS)), 0, _read_position(position_of)
    position, found = _with_position(
        sql, params, ["category", "band", "in_price", "in_category", "rows"], position_of,
        prepared=False)
    per_category: dict[str, int] = {}
    per_band = [0] * len(PRICE_BANDS)
    total = 0
    for row_category, band, in_price, in_category, rows in found:
        total += rows
        per_category[row_category] = per_category.get(row_category, 0) + in_price
        per_band[band] += in_category
    return facet_lists(per_category, per_band), total, position


def _without_q(search: Search, window: tuple[int, int], position_of: str | None) -> Results:
    """PostgreSQL, a search without ``q``: the rows at ``window`` (offset, size: the
    page and one more), the ``CatalogFacet`` counts (as :func:`_facets_without_q`) and
    the position of ``position_of``, by one prepared statement."""
    (in_price, price_params), (in_category, category_params) = _filters_sql(search)
    order = ORDER_SQL[search.order]
    offset, size = window
    position, found = _with_position(
        # n: 0 for a count, else the row's place in the order (from 1).
        f"SELECT 0::bigint AS n, category, band, count, NULL::uuid AS product_id, "
        f"NULL::text AS document FROM {CatalogFacet._meta.db_table}"
        + (" WHERE in_stock" if search.in_stock else "")
        + f" UNION ALL SELECT * FROM (SELECT row_number() OVER (ORDER BY {order}), NULL, "
        f"NULL::smallint, NULL::integer, product_id, document FROM {_TABLE} "
        f"WHERE {in_price} AND {in_category}"
        + (" AND stock_available > 0" if search.in_stock else "")
        + f" ORDER BY {order} OFFSET %s LIMIT %s) AS page",
        [*price_params, *category_params, offset, size + 1],
        ["n", "category", "band", "count", "product_id", "document"], position_of,
        prepared=True)
    return Results(
        rows=Ranked.window(((n, pk, document) for n, _c, _b, _n, pk, document in found
                            if n), window),
        facets=_stored_facets(search, (row[1:4] for row in found if not row[0])),
        position=position)


def _stored_facets(
    search: Search, stored: Iterable[tuple[str, int, int]],
    products: QuerySet | None = None, price: Q | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The facets of a search without ``q`` from the ``CatalogFacet`` rows ``stored``:
    always for the price facet; for the category facet when there is no price filter
    or one on band edges, otherwise counted over ``products`` (by default the rows
    ``search`` looks in) in the price range ``price`` (by default its price filter;
    the ``price`` index)."""
    per_category, per_band = _summed(search, stored)
    if per_category is None:  # the price filter cuts through a band: count
        products = searched(search) if products is None else products
        price = price_filter(search) if price is None else price
        per_category = dict(products.filter(price).order_by().values("category")
                            .annotate(n=Count("pk")).values_list("category", "n"))
    return facet_lists(per_category, per_band)


def facets_without_q(
    search: Search, matched: QuerySet, price: Q
) -> dict[str, list[dict[str, Any]]]:
    return _facets_without_q(search, matched, price, None)[0]


def _facets_without_q(
    search: Search, matched: QuerySet, price: Q, position_of: str | None
) -> tuple[dict[str, list[dict[str, Any]]], int | None]:
    """The same counts for a search without ``q``, from the precomputed ``CatalogFacet``
    rows (:func:`_stored_facets`), and the position of ``position_of``."""
    # All of them at once (categories x bands x in stock: a few hundred rows at most),
    # by one prepared statement.
    position, stored = _with_position(
        f"SELECT category, band, count FROM {CatalogFacet._meta.db_table}"
        + (" WHERE in_stock" if search.in_stock else ""), [],
        ["category", "band", "count"], position_of, prepared=True)
    return _stored_facets(search, stored, matched, price), position


def _summed(
    search: Search, stored: Iterable[tuple[str, int, int]]
) -> tuple[dict[str, int] | None, list[int]]:
    """The facet counts of ``search`` from counts per (category, band) of the set its
    ``q`` and ``in_stock`` match: per category (None if the price filter cuts through
    a band) and per band."""
    bands = aligned_bands(search.min_price, search.max_price)
    per_category: dict[str, int] | None = None if bands is None else {}
    per_band = [0] * len(PRICE_BANDS)
    for row_category, band, n in stored:
        if per_category is not None and band in bands:
            per_category[row_category] = per_category.get(row_category, 0) + n
        if search.category is None or row_category == search.category:
            per_band[band] += n
    return per_category, per_band


#: A query word whose lexemes the ``simple`` parser makes as written (no hyphen,
#: no letter outside ASCII): its prefix query is exactly the lexemes it begins.
TERM = re.compile(r"[a-z0-9]+")


class Kept(NamedTuple):
    """:func:`term_facets`' answer: :func:`facets`' three, and the page if it was read."""

    facets: dict[str, list]
    matched: int
    position: int | None
    page: Ranked | None = None


def term_facets(
    search: Search, position_of: str | None, window: tuple[int, int] | None = None
) -> Kept | None:
    """PostgreSQL: :func:`facets`' answer from ``CatalogTerm`` when ``search.q`` is one
    word, not corrected, that begins exactly one lexeme of the catalog (``stee`` of
    "steel") and a price filter, if any, is on band edges; else None (count the
    matches). The check and the counts are one statement, with the position of
    ``position_of`` and, given a ``window`` (offset, size: the page and one more) of a
    search :func:`posted` names, the rows at that window: from ``CatalogPosting``, in
    order from its index however many products have the lexeme."""
    q = (search.q or "").strip().lower()
    if (read_connection.vendor != "postgresql" or not TERM.fullmatch(q)
            or len(q) > CatalogTerm._meta.get_field("lexeme").max_length
            or corrections([q])
            or aligned_bands(search.min_price, search.max_price) is None):
        return None
    table = CatalogTerm._meta.db_table
    position_sql, position_params = _position_sql(position_of)
    paged = window is not None and posted(search)
    page_sql, page_params = "", []
    if paged:
        offset, size = window
        in_category, page_params = (("AND p.category = %s", [search.category])
                                    if search.category is not None else ("", []))
        # n: the row's place in the order (from 1); a count's row has none.
        page_sql = (
            " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, page.n, page.product_id, "
            "c.document FROM (SELECT p.product_id, row_number() OVER "
            "(ORDER BY p.rank DESC, p.sku, p.product_id) AS n "
            f"FROM {_POSTINGS} AS p WHERE p.lexeme = (SELECT first FROM begun "
            f"WHERE first = last) {in_category} ORDER BY p.rank DESC, p.sku, p.product_id "
            f"OFFSET %s LIMIT %s) AS page JOIN {_TABLE} AS c ON c.product_id = page.product_id"
        )
        page_params += [offset, size + 1]
    with prepared_cursor() as cursor:
        # Its first and last lexeme by the byte order of the primary key: the same
        # word if it begins one.
        cursor.execute(
            f"WITH begun AS MATERIALIZED (SELECT {position_sql} AS read_position, "
            f"min(lexeme) AS first, max(lexeme) AS last FROM {table} "
            "WHERE lexeme >= %s AND lexeme < %s) "
            "SELECT read_position, first, last, t.category, t.band, t.count, NULL::bigint, "
            f"NULL::uuid, NULL::text FROM begun LEFT JOIN {table} AS t "
            "ON t.lexeme = first AND first = last"
            + (" AND t.in_stock" if search.in_stock else "") + page_sql,
            [*position_params, *beginning(q), *page_params],
        )
        found = cursor.fetchall()
    counts = [row[:6] for row in found if row[6] is None]
    position, first, last = counts[0][:3]
    if first is None or first != last:
        return None
    stored = [row[3:] for row in counts if row[3] is not None]
    per_category, per_band = _summed(search, stored)
    page = (Ranked.window((row[6:] for row in found if row[6] is not None), window)
            if paged else None)
    return Kept(facet_lists(per_category or {}, per_band), sum(n for *_k, n in stored),
                position, page)


def aligned_bands(low: Decimal | None, high: Decimal | None) -> list[int] | None:
    """The bands a price filter covers exactly (prices have two places, so ``max_price``
    24.99 ends the band below 25.00), or None if it cuts through one."""
    lows = [band_low for band_low, _ in PRICE_BANDS]
    highs = [band_high for _, band_high in PRICE_BANDS]
    first = 0 if low is None else (lows.index(low) if low in lows else None)
    last = len(PRICE_BANDS) - 1
    if high is not None:
        top = high + CENT
        last = highs.index(top) if top in highs else None
    if first is None or last is None:
        return None
    return list(range(first, last + 1))


def facet_lists(per_category: dict[str, int], per_band: list[int]) -> dict[str, list]:
    return {
        "category": [
            {"value": value, "count": count}
            for value, count in sorted(per_category.items(), key=lambda kv: (-kv[1], kv[0]))
            if count
        ],
        "price": [
            {"min": str(low), "max": None if high is None else str(high), "count": count}
            for (low, high), count in zip(PRICE_BANDS, per_band, strict=True)
        ],
    }


def band_of(price: Decimal) -> int:
    """The index in ``PRICE_BANDS`` of ``price`` (as :func:`price_band` in SQL)."""
    return next((i for i, (_low, high) in enumerate(PRICE_BANDS)
                 if high is not None and price < high), len(PRICE_BANDS) - 1)


def facet_key(row: ProductCatalog) -> tuple[str, int, bool]:
    """The ``CatalogFacet`` row that counts ``row``."""
    return (row.category, band_of(Decimal(row.price)), row.stock_available > 0)


def count_terms(sign: int, products: list[Any] | None = None) -> None:
    """PostgreSQL: add ``sign`` (1 or -1) times the terms of ``products`` (primary keys;
    None: every product) to the ``CatalogTerm`` counts, as their rows are now, then
    delete the counts at 0. The catalog projector takes a product's terms out before
    it changes and adds them after."""
    terms = CatalogTerm._meta.db_table
    catalog = ProductCatalog._meta.db_table
    band, band_params = _band_sql()
    with read_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {terms} (lexeme, category, band, in_stock, count) "
            "SELECT lexeme, category, band, in_stock, %s * count(*) FROM ("
            "SELECT unnest(tsvector_to_array(search_vector)) AS lexeme, category, "
            f"{band} AS band, stock_available > 0 AS in_stock FROM {catalog}"
            + ("" if products is None else " WHERE product_id = ANY(%s)")
            # In the key's order: a lexeme's new counts share a few pages of the
            # table (a search reads them all: 0.12 ms for 159 rows, not 0.36 when
            # they are scattered over 123 pages).
            + ") AS product_terms GROUP BY lexeme, category, band, in_stock "
            "ORDER BY lexeme, category, band, in_stock "
            "ON CONFLICT (lexeme, category, band, in_stock) "
            f"DO UPDATE SET count = {terms}.count + excluded.count",
            [sign, *band_params, *([] if products is None else [products])],
        )
        cursor.execute(f"DELETE FROM {terms} WHERE count = 0")


def post_terms(products: list[Any] | None = None) -> None:
    """PostgreSQL: the ``CatalogPosting`` rows of ``products`` (primary keys; None: every
    product) written again from their catalog rows as they are now. The catalog
    projector writes them when a product's SKU, name or category changes."""
    catalog = ProductCatalog._meta.db_table
    some = "" if products is None else " WHERE product_id = ANY(%s)"
    params = [] if products is None else [products]
    with read_connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_POSTINGS}{some}", params)
        cursor.execute(
            f"INSERT INTO {_POSTINGS} (product_id, lexeme, category, rank, sku) "
            f"SELECT product_id, lexeme, category, ts_rank(search_vector, "
            f"({QUOTED_LEXEME})::tsquery), sku FROM (SELECT product_id, category, sku, "
            "search_vector, unnest(tsvector_to_array(search_vector)) AS lexeme "
            f"FROM {catalog}{some}) AS terms ORDER BY lexeme, category",  # as read
            params,
        )


@functools.cache
def _band_sql() -> tuple[str, tuple]:
    """:func:`price_band` as SQL over the catalog's table (PostgreSQL)."""
    query = ProductCatalog.objects.all().query
    compiler = query.get_compiler(connection=read_connection)
    sql, params = price_band().resolve_expression(query).as_sql(compiler, read_connection)
    return sql, tuple(params)


def recount_facets() -> None:
    """``CatalogFacet``, ``CatalogTerm`` and ``CatalogPosting`` written again from the
    catalog (for rows written outside the projector: the benchmark's generated
    catalog)."""
    groups = (
        ProductCatalog.objects.order_by()
        .values("category", band=price_band(),
                in_stock=ExpressionWrapper(Q(stock_available__gt=0),
                                           output_field=BooleanField()))
        .annotate(n=Count("pk"))
    )
    CatalogFacet.objects.all().delete()
    CatalogFacet.objects.bulk_create([
        CatalogFacet(category=g["category"], band=g["band"], in_stock=g["in_stock"],
                     count=g["n"])
        for g in groups
    ])
    CatalogTerm.objects.all().delete()
    if read_connection.vendor == "postgresql":
        count_terms(1)
        post_terms()


def search_parameters(params: Iterable[str]) -> bool:
    """Whether a request names any search parameter (else it is the plain list)."""
    return any(name in SEARCH_PARAMETERS for name in params)


SEARCH_PARAMETERS = frozenset(
    {"q", "search", "category", "min_price", "max_price", "in_stock", "sort"}
)
