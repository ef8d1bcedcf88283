"""Read-model tables and the checkpoints that say how far each projection has read.

Read models have no foreign keys into the write side: they are keyed by aggregate id
and written only by projectors (see ``projections/projectors.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.db import models

from shop.databases import READ, read_connection
from shop.eventstore import ShopApplication


class CheckpointQuerySet(models.QuerySet):
    """The one way to read and lock checkpoints: by projection name, on the shop's log
    (``upstream`` names the application whose log is read; the shop has one)."""

    def of(self, name: str, upstream: str = ShopApplication.name) -> CheckpointQuerySet:
        return self.filter(projection=name, upstream=upstream)

    def among(self, names: Iterable[str]) -> CheckpointQuerySet:
        return self.filter(projection__in=list(names), upstream=ShopApplication.name)

    def failed(self) -> CheckpointQuerySet:
        return self.filter(status=Checkpoint.FAILED)

    def position_of(self, name: str, upstream: str = ShopApplication.name) -> int:
        """The projection's position: 0 before it has a row."""
        return self.of(name, upstream).values_list("position", flat=True).first() or 0

    def position_sql(self, name: str, upstream: str = ShopApplication.name
                     ) -> tuple[str, tuple]:
        """The projection's position (0 before it has a row) as a scalar SQL
        expression and its parameters, for a column of a hand-written statement: a page
        and the position it is as fresh as, read in one statement. Compiled once per
        process."""
        return _position_statement(name, upstream)

    def positions(self, names: Iterable[str]) -> dict[str, int]:
        """Each named projection's position (0 for those without a row)."""
        names = list(names)
        found = dict(self.among(names).values_list("projection", "position"))
        return {name: found.get(name, 0) for name in names}

    def lock(self, name: str, upstream: str = ShopApplication.name) -> Checkpoint:
        """The projection's row, created if missing, locked ``FOR UPDATE`` until the
        transaction ends: the one worker allowed to process the projection holds it.

        On PostgreSQL the wait is bounded (5 s): the caller's task retries, and the
        sweep triggers it again. The bound is for the checkpoint only: the batch's own
        statements wait as usual.
        """
        if read_connection.vendor != "postgresql":
            self.get_or_create(projection=name, upstream=upstream)
            return self.select_for_update().get(projection=name, upstream=upstream)
        # One round trip (a catch-up runs after every command): set the bound, lock
        # the row, lift the bound. The statement is compiled once per process.
        fields, sql, params = _lock_statement(name, upstream)
        for _attempt in range(2):
            with read_connection.cursor() as cursor:
                cursor.execute(sql, params)
                cursor.nextset()  # the SELECT's rows
                row = cursor.fetchone()
            if row is not None:
                return Checkpoint.from_db(read_connection.alias, fields, row)
            self.get_or_create(projection=name, upstream=upstream)  # a projection's first run
        raise Checkpoint.DoesNotExist(name)  # pragma: no cover - created just above


@functools.lru_cache(maxsize=64)
def _lock_statement(name: str, upstream: str) -> tuple[list[str], str, tuple]:
    """``Checkpoint.objects.lock``'s statement on PostgreSQL, with its fields."""
    fields = [field.attname for field in Checkpoint._meta.concrete_fields]
    sql, params = (
        Checkpoint.objects.of(name, upstream).select_for_update().values_list(*fields).query
        .get_compiler(READ).as_sql()
    )
    return fields, (
        f"SET LOCAL lock_timeout = '5s'; {sql}; SET LOCAL lock_timeout TO DEFAULT"
    ), tuple(params)


@functools.lru_cache(maxsize=64)
def _position_statement(name: str, upstream: str) -> tuple[str, tuple]:
    """``Checkpoint.objects.position_sql``'s SQL and parameters."""
    sql, params = (
        Checkpoint.objects.of(name, upstream).values("position")[:1].query
        .get_compiler(READ).as_sql()
    )
    return f"COALESCE(({sql}), 0)", tuple(params)


class Checkpoint(models.Model):
    """How far a projection has processed an upstream application's notification log.

    ``position`` is the notification id up to which every event has been processed,
    relevant to this projection or not; it is advanced in the same transaction as the
    read-model rows it covers. The row is also the projection's lock: a worker holds
    it ``FOR UPDATE`` while it processes a batch.
    """

    OK, FAILED = "ok", "failed"
    STATUS_CHOICES = [(OK, "ok"), (FAILED, "failed")]

    projection = models.CharField(max_length=100)
    upstream = models.CharField(max_length=100, default="shop")
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=OK)
    last_error = models.TextField(blank=True, default="")
    error_position = models.BigIntegerField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)

    objects = CheckpointQuerySet.as_manager()

    class Meta:
        # The admin lists checkpoints as the projections' status page.
        verbose_name = "projection checkpoint"
        verbose_name_plural = "projection status"
        constraints = [
            models.UniqueConstraint(
                fields=["projection", "upstream"], name="one_checkpoint_per_projection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projection}@{self.position}"

    @property
    def is_failed(self) -> bool:
        """Parked before a failing event (``error_position``) until it recovers."""
        return self.status == self.FAILED


class OrderHistory(models.Model):
    """One customer order as "view order history" shows it: one row, one SELECT.

    ``lines`` is denormalized: ``[{product_id, sku, product_name, quantity,
    unit_price, line_total}]`` with money as decimal strings, so a page of orders
    needs no join. ``product_name`` is the product's current name: a rename rewrites
    it in every past order with one UPDATE (see ``OrderHistoryProjector``).
    """

    order_id = models.UUIDField(primary_key=True)
    # The notification id of the order's ``Order.Placed``: unique, increasing with
    # placement (gaps allowed), short enough to say aloud ("order 10432").
    number = models.BigIntegerField(unique=True, null=True)
    customer_id = models.IntegerField()
    customer = models.CharField(max_length=150)
    status = models.CharField(max_length=20)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    # Null once the customer is forgotten (``Customer.Forgotten``): their key is gone.
    shipping_address = models.TextField(null=True, blank=True)
    placed_at = models.DateTimeField()
    # The order aggregate's version: that of the latest Order event applied.
    version = models.PositiveIntegerField()
    lines = models.JSONField(default=list)
    shipment_id = models.UUIDField(null=True, blank=True, unique=True)
    carrier = models.CharField(max_length=100, null=True, blank=True)
    shipment_status = models.CharField(max_length=20, null=True, blank=True)
    shipment_updated_at = models.DateTimeField(null=True, blank=True)
    # The shipment aggregate's version, so a re-applied shipment event is skipped.
    shipment_version = models.PositiveIntegerField(null=True, blank=True)
    # The order as the API shows it, JSON text rendered by the projector
    # (``projections.documents``) and served as stored.
    document = models.TextField(null=True, blank=True)

    class Meta:
        verbose_name = "order"
        verbose_name_plural = "orders"
        indexes = [
            models.Index(
                fields=["customer_id", "-placed_at"], name="orderhistory_customer_placed"
            ),
            models.Index(fields=["-placed_at", "-order_id"], name="orderhistory_placed"),
        ]
        # PostgreSQL also has a GIN index on ``lines`` for the rename's ``@>`` filter
        # (added in migration 0002; SQLite has no GIN).

    def __str__(self) -> str:
        return f"Order {self.number}" if self.number else f"Order {self.order_id}"


class ProductName(models.Model):
    """A projection's own note of each product's SKU and current name, fed by
    ``Product.Registered`` and ``Product.Renamed`` (``projectors.ProductNames``)."""

    product_id = models.UUIDField(primary_key=True)
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    # The product aggregate's version of the latest Registered/Renamed applied.
    version = models.PositiveIntegerField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.sku}: {self.name}"


class OrderHistoryProduct(ProductName):
    """The order history's own note of each product's SKU and current name.

    ``Order.Placed`` carries each line's SKU and price but not the product's name;
    this table names the lines. It belongs to the order history projection (rebuilt
    with it) and is fed by ``Product.Registered`` and ``Product.Renamed``.
    """


class ProductCatalog(models.Model):
    """The catalog as shoppers browse it: one row per product."""

    product_id = models.UUIDField(primary_key=True)
    sku = models.CharField("SKU", max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    stock = models.IntegerField()
    reserved = models.IntegerField(default=0)
    stock_available = models.IntegerField()
    # The product aggregate's version: that of the latest Product event applied.
    version = models.PositiveIntegerField()
    # When the product was registered (its ``Registered`` event's time): ``sort=-created``.
    created_at = models.DateTimeField(null=True, blank=True)
    # The product as the API lists it, JSON text (``projections.documents``).
    document = models.TextField(null=True, blank=True)
    # Search (``projections.search``): on PostgreSQL the table also has two generated
    # columns, ``search_text`` (lower-cased SKU, name and category) with a trigram GIN
    # index and ``search_vector`` (its ``simple`` tsvector) with a GIN index; on SQLite
    # an FTS5 table ``projections_productsearch`` kept by triggers. Both are made by
    # migration 0009, not declared here: no projector writes them.

    class Meta:
        verbose_name = "product"
        verbose_name_plural = "products"
        indexes = [
            models.Index(fields=["price", "product_id"], name="catalog_price"),
            models.Index(fields=["name", "product_id"], name="catalog_name"),
            models.Index(fields=["created_at", "product_id"], name="catalog_created"),
            models.Index(fields=["category", "price"], name="catalog_category_price"),
        ]

    def __str__(self) -> str:
        return f"{self.sku}: {self.name}"


class CatalogFacet(models.Model):
    """How many products of a category fall in a price band (``projections.search.
    PRICE_BANDS``, by index), in stock or not: the facet counts of a search without
    ``q``, summed from a few dozen rows instead of counted over the catalog. Kept by the
    catalog projector (a row at 0 is deleted)."""

    pk = models.CompositePrimaryKey("category", "band", "in_stock")
    category = models.CharField(max_length=100)
    band = models.SmallIntegerField()
    in_stock = models.BooleanField()
    count = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.category} band {self.band} ({'in stock' if self.in_stock else 'out'})"


class CatalogTerm(models.Model):
    """How many products have the search lexeme ``lexeme`` (a word of their
    ``search_vector``) and are of a category, in a price band, in stock or not: the
    facet counts of a search whose ``q`` is one word that begins one lexeme only
    (``projections.search.term_facets``), summed from at most a few hundred rows instead
    of counted over the products it matches; and the lexemes a word of ``q`` begins
    (``projections.search.begun``). Kept by the catalog projector on PostgreSQL (a
    row at 0 is deleted); empty on SQLite, whose searches count."""

    pk = models.CompositePrimaryKey("lexeme", "category", "band", "in_stock")
    # Compared byte by byte on PostgreSQL (migration 0011: COLLATE "C"), so that the
    # primary key's index finds the lexemes a prefix begins, as the text index does.
    lexeme = models.CharField(max_length=200)
    category = models.CharField(max_length=100)
    band = models.SmallIntegerField()
    in_stock = models.BooleanField()
    count = models.IntegerField()

    class Meta:
        indexes = [
            # What a batch's DELETE of the rows it brought to 0 finds (none otherwise).
            models.Index(fields=["lexeme"], condition=models.Q(count=0),
                         name="catalog_term_zero"),
        ]

    def __str__(self) -> str:
        return (f"{self.lexeme}: {self.category} band {self.band} "
                f"({'in stock' if self.in_stock else 'out'})")


class CatalogPosting(models.Model):
    """A product that has the search lexeme ``lexeme``, with what orders it in a search
    for that lexeme alone: its ``ts_rank`` for the lexeme, then its SKU (a search's
    relevance order), and its category. The page of a search whose ``q`` is one word
    that begins one lexeme only (``projections.search.posted`` and ``term_facets``) is
    then read from an index in order, 21 entries, instead of ranking every product the
    word matches (11,000 for ``steel`` at 100,000 products). Kept by the catalog
    projector on PostgreSQL when a product's SKU, name or category changes; empty on
    SQLite."""

    pk = models.CompositePrimaryKey("product_id", "lexeme")
    product_id = models.UUIDField()
    # Compared byte by byte on PostgreSQL (migration 0013: COLLATE "C"), as
    # CatalogTerm's: a search looks up one's lexeme in the other's index.
    lexeme = models.CharField(max_length=200)
    category = models.CharField(max_length=100)
    # ts_rank(search_vector, lexeme): a real, as PostgreSQL computes it.
    rank = models.FloatField()
    sku = models.CharField(max_length=64)

    class Meta:
        indexes = [
            models.Index(fields=["lexeme", "-rank", "sku", "product_id"],
                         name="catalog_posting_rank"),
            models.Index(fields=["lexeme", "category", "-rank", "sku", "product_id"],
                         name="catalog_posting_category"),
        ]

    def __str__(self) -> str:
        return f"{self.lexeme}: {self.sku}"


class CatalogWord(models.Model):
    """Every word (3+ letters or digits, lower-cased) of the catalog's SKUs, names and
    categories: the vocabulary a misspelt search word is corrected against
    (``projections.search.corrections``). Written by the catalog projector; a word
    a rename left behind stays (a correction to it then only finds nothing)."""

    word = models.CharField(max_length=200, primary_key=True)

    def __str__(self) -> str:
        return self.word


class SalesOrder(models.Model):
    """The sales projection's note of each order: the day it was placed and its lines,
    so that a cancellation takes exactly them out of that day's figures (once)."""

    order_id = models.UUIDField(primary_key=True)
    day = models.DateField()
    # [{"product_id": str, "quantity": int, "revenue": "12.50"}]
    lines = models.JSONField(default=list)
    cancelled = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"order {self.order_id} on {self.day}"


class SalesDaily(models.Model):
    """One UTC day's sales: orders placed that day and not cancelled (with their units
    and revenue), and how many placed that day were cancelled since."""

    day = models.DateField(primary_key=True)
    orders = models.IntegerField(default=0)
    units = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    cancelled = models.IntegerField(default=0)

    class Meta:
        verbose_name = "daily sales"
        verbose_name_plural = "daily sales"

    def __str__(self) -> str:
        return f"sales on {self.day}"


class SalesProductDaily(models.Model):
    """One product's units and revenue on one UTC day (orders not cancelled); a range's
    per-product figures are these rows summed over the range."""

    pk = models.CompositePrimaryKey("day", "product_id")
    day = models.DateField()
    product_id = models.UUIDField()
    units = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        verbose_name = "product sales per day"
        verbose_name_plural = "product sales per day"

    def __str__(self) -> str:
        return f"{self.product_id} on {self.day}"


class SalesProduct(ProductName):
    """The sales projection's note of each product's SKU and current name."""


class Activity(models.Model):
    """One thing someone did, as staff read the shop's activity: one row per event a
    command caused (an order's reservations and the order's own ``Shipped`` are
    consequences, not separate acts), newest first by its position in the log.

    The sentence ("admin repriced MUG-2 from 12.50 to 13.00 (back office)") is written
    when read (``projections.activity.sentence``), from these fields: so a forgotten
    customer's name leaves every row with one UPDATE, and no sentence keeps it.
    """

    position = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField()
    actor_kind = models.CharField(max_length=10)
    actor_user_id = models.IntegerField(null=True, blank=True)
    # Null for the system, and for a customer once forgotten.
    actor_username = models.CharField(max_length=150, null=True, blank=True)
    via = models.CharField(max_length=10)
    request_id = models.CharField(max_length=128, null=True, blank=True)
    causation_id = models.CharField(max_length=100, null=True, blank=True)
    aggregate_type = models.CharField(max_length=10)  # product, order, shipment, customer
    aggregate_id = models.UUIDField()
    # What staff call the aggregate: a product's SKU, an order's number (a shipment's:
    # its order's), a forgotten customer's account id.
    subject = models.CharField(max_length=64)
    type = models.CharField(max_length=40)  # "Product.Repriced"
    details = models.JSONField(default=dict)  # the sentence's values: {"from", "to"}

    class Meta:
        verbose_name = "activity"
        verbose_name_plural = "activity"
        indexes = [
            models.Index(fields=["actor_username", "-position"], name="activity_actor"),
            models.Index(fields=["subject", "-position"], name="activity_subject"),
            models.Index(fields=["aggregate_id", "-position"], name="activity_aggregate"),
            models.Index(fields=["type", "-position"], name="activity_type"),
            models.Index(fields=["at"], name="activity_at"),
        ]

    def __str__(self) -> str:
        return f"{self.type} at {self.position}"


class ActivitySubject(models.Model):
    """The activity projection's note of each aggregate's name (SKU, order number) and,
    for a product, its current price: what a sentence needs that its event lacks
    ("repriced from 12.50")."""

    aggregate_id = models.UUIDField(primary_key=True)
    subject = models.CharField(max_length=64)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The aggregate's version of the latest event applied to this row.
    version = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.subject
