"""Projectors: one per read model, one handler per event type.

Each batch is applied in memory and written back in bulk: ``preload`` reads every row
the batch touches with one query per table, the handlers change those rows, and
``flush`` writes the changed ones with one upsert per table. Handlers are idempotent:
every row remembers the version of the aggregate event it last applied, and an event
whose ``originator_version`` is not newer is skipped, so re-applying a batch changes
nothing.
"""

from __future__ import annotations

import functools
import json
import operator
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from django.db.models import Model, Q, signals
from django.db.models.base import ModelState

from catalog.domain import Product
from orders.domain import CANCELLED, DELIVERED, PLACED, SHIPPED, Order
from projections.documents import render, rerender
from projections.models import (
    Activity,
    ActivitySubject,
    CatalogFacet,
    CatalogPosting,
    CatalogTerm,
    CatalogWord,
    OrderHistory,
    OrderHistoryProduct,
    ProductCatalog,
    ProductName,
    SalesDaily,
    SalesOrder,
    SalesProduct,
    SalesProductDaily,
)
from projections.runner import Projector, handles
from projections.search import count_terms, facet_key, post_terms, words
from shipping import domain as shipping
from shipping.domain import Shipment
from shop.accounts.domain import Customer
from shop.databases import read_connection

CENT = Decimal("0.01")

#: How the read models name a customer once forgotten (their name is unreadable).
FORGOTTEN_CUSTOMER = "forgotten customer"


def money(value: Any) -> str:
    """A decimal as the API shows money: a string with two places."""
    return str(as_decimal(value).quantize(CENT))


def as_decimal(value: Any) -> Decimal:
    """``Decimal(str(value))``, without the round trip for a value that is one already
    (a decoded event's amounts are)."""
    return value if type(value) is Decimal else Decimal(str(value))


def as_uuid(value: Any) -> UUID:
    """``UUID(str(value))``, without the round trip for a value that is one already
    (a decoded event's ids are)."""
    return value if type(value) is UUID else UUID(str(value))


def upsert(
    model: type[Model], rows: Iterable[Model], unique_fields: list[str] | None = None
) -> None:
    """Insert or update ``rows`` in one statement, keyed by primary key (or by
    ``unique_fields``, a unique constraint's fields)."""
    rows = list(rows)
    if not rows:
        return
    pk = model._meta.pk.name
    keys = unique_fields or [pk]
    if read_connection.vendor == "postgresql":
        _upsert_postgresql(model, rows, keys)
        return
    model.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=keys,
        update_fields=[
            f.name for f in model._meta.concrete_fields if f.name != pk and f.name not in keys
        ],
    )


def _upsert_postgresql(model: type[Model], rows: list[Model], keys: list[str]) -> None:
    """``INSERT … SELECT FROM json_populate_recordset(<the rows as one JSON array>)
    ON CONFLICT DO UPDATE``, sent with server-side binding on the read database's
    connection (same transaction).

    Why not ``bulk_create``: Django's psycopg cursor binds parameters client-side, so
    every value of every row is quoted into the SQL text in Python, and the ORM
    prepares each value on the way. Measured on a rebuild of 100,000 events, that was
    a third of its time. Why one JSON parameter rather than a typed array per column
    (``unnest``): psycopg dumps each element of an array in Python, where the C
    encoder of ``json`` writes the whole batch; the database parses each column's
    text as its type, as it would a literal.
    """
    columns, statement = _upsert_statement(model, tuple(keys))
    records = [{column: value if convert is None or value is None else convert(value)
                for column, attname, convert in columns
                for value in (getattr(row, attname),)}
               for row in rows]
    read_connection.ensure_connection()
    with psycopg.Cursor(read_connection.connection) as cursor:
        cursor.execute(statement, [_RECORDS.encode(records)])


#: The rows of an upsert as JSON (strict: no NaN; characters as they are).
_RECORDS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

#: How a field's value goes into the JSON of an upsert (as text its column's type
#: parses: ``uuid``, ``numeric``, ``timestamptz``, ``date``); JSON values go as they
#: are (a ``jsonb`` column takes the nested value), others as JSON scalars.
_TO_JSON: dict[str, Callable[[Any], Any]] = {
    "UUIDField": str,
    "DecimalField": lambda value: str(as_decimal(value)),
    "DateTimeField": operator.methodcaller("isoformat"),
    "DateField": operator.methodcaller("isoformat"),
}


@functools.lru_cache(maxsize=64)
def _upsert_statement(
    model: type[Model], keys: tuple[str, ...]
) -> tuple[list[tuple[str, str, Callable[[Any], Any] | None]], str]:
    """The columns (name, attribute, conversion to JSON) and statement of
    ``_upsert_postgresql`` (built once per model)."""
    meta = model._meta
    # A surrogate key is left to its default when rows are matched by other fields.
    fields = [
        f for f in meta.concrete_fields
        if not (f.primary_key and f.name not in keys and f.auto_created)
    ]
    quote = read_connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in keys)
    updates = ", ".join(
        f"{quote(f.column)} = EXCLUDED.{quote(f.column)}"
        for f in fields if f.name not in keys and not f.primary_key
    )
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    table = quote(meta.db_table)
    plan = [(f.column, f.attname, _TO_JSON.get(f.get_internal_type())) for f in fields]
    return plan, (
        f"INSERT INTO {table} ({columns}) SELECT {columns}"
        f" FROM json_populate_recordset(NULL::{table}, %s::json)"
        f" ON CONFLICT ({conflict}) {action}"
    )


def fetch(model: type[Model], *, match: str = "AND", **any_of: Iterable[Any]) -> list[Model]:
    """The rows of ``model`` whose fields take one of the given values
    (``fetch(OrderHistory, match="OR", order_id=ids, shipment_id=ids2)``), read in one
    statement on the read database's connection (same transaction), as ``upsert`` writes them.

    Why not ``filter(...__in=...)`` / ``in_bulk``: with Django's client-side binding
    every id is quoted into the SQL text in Python, and the query is compiled anew per
    batch. That was a third of a catch-up's CPU under a stream of orders; here the
    statement is built once and each field's values go as one typed array. SQLite (the
    embedded default, small data) keeps the ORM.
    """
    if match not in ("AND", "OR"):
        raise ValueError(f"match is AND or OR, not {match!r}")
    values = {name: list(dict.fromkeys(v)) for name, v in any_of.items()}
    if not (any if match == "OR" else all)(values.values()):
        return []  # no value can match
    if read_connection.vendor != "postgresql":
        each = [Q(**{f"{name}__in": v}) for name, v in values.items()]
        return list(model.objects.filter(
            functools.reduce(operator.or_ if match == "OR" else operator.and_, each)
        ))
    names, converters, statement = _fetch_statement(model, match, tuple(values))
    read_connection.ensure_connection()
    with psycopg.Cursor(read_connection.connection) as cursor:
        cursor.execute(statement, list(values.values()))
        rows = cursor.fetchall()
    if converters:
        rows = [list(row) for row in rows]
        for row in rows:
            for i, convert in converters:
                row[i] = convert(row[i], None, read_connection)
    alias = read_connection.alias
    if not _plain_rows(model):
        return [model.from_db(alias, names, row) for row in rows]
    # What ``from_db`` makes, without ``Model.__init__``'s generic work per field
    # (a batch reads thousands of rows): the attributes, and the state of a loaded row.
    loaded = []
    for row in rows:
        instance = model.__new__(model)
        state = ModelState()
        state.adding, state.db = False, alias
        attributes = dict(zip(names, row, strict=True))
        attributes["_state"] = state
        instance.__dict__ = attributes
        loaded.append(instance)
    return loaded


def new_row(model: type[Model], **values: Any) -> Model:
    """``model(**values)``: a row not yet saved, each field not given at its default;
    made without ``Model.__init__``'s generic work per field when the model's rows
    are plain (:func:`_plain_rows`), as a batch makes thousands."""
    if not _plain_rows(model):
        return model(**values)
    attributes = {}
    for attname, default in _defaults(model):
        attributes[attname] = values.pop(attname) if attname in values else default()
    if values:
        raise TypeError(f"{model.__name__} has no field named {', '.join(values)}")
    attributes["_state"] = ModelState()
    instance = model.__new__(model)
    instance.__dict__ = attributes
    return instance


@functools.cache
def _defaults(model: type[Model]) -> list[tuple[str, Callable[[], Any]]]:
    return [(f.attname, f.get_default) for f in model._meta.concrete_fields]


@functools.cache
def _plain_rows(model: type[Model]) -> bool:
    """Whether a row of ``model`` is only its attributes: no ``pre_init``/``post_init``
    receiver, no field whose attribute is set through a descriptor (a foreign key's)."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return False
    return not any(hasattr(type(getattr(model, f.attname, None)), "__set__")
                   for f in model._meta.concrete_fields)


@functools.lru_cache(maxsize=64)
def _fetch_statement(
    model: type[Model], match: str, lookups: tuple[str, ...]
) -> tuple[list[str], list[tuple[int, Any]], str]:
    """The field names, value converters and statement of ``fetch`` (built once)."""
    meta = model._meta
    fields = list(meta.concrete_fields)
    quote = read_connection.ops.quote_name
    where = f" {match} ".join(
        f"{quote(field.column)} = ANY(%b::{field.db_type(read_connection)}[])"
        for field in map(meta.get_field, lookups)
    )
    # The same conversions the ORM applies on the way out (jsonb arrives as text).
    converters = [
        (i, f.from_db_value) for i, f in enumerate(fields) if hasattr(f, "from_db_value")
    ]
    columns = ", ".join(quote(f.column) for f in fields)
    return [f.attname for f in fields], converters, (
        f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {where}"
    )


def text_of(row: ProductCatalog) -> tuple[str, str, str]:
    """What a product's search lexemes and postings are made of."""
    return row.sku, row.name, row.category


class ProductCatalogProjector(Projector):
    """``ProductCatalog``: each product's name, price and the stock a shopper can buy."""

    name = "product_catalog"
    models = (ProductCatalog, CatalogWord, CatalogFacet, CatalogTerm, CatalogPosting)

    def begin(self) -> None:
        self.rows: dict[UUID, ProductCatalog] = {}
        self.changed: set[UUID] = set()
        self.words: set[str] = set()  # the search's vocabulary, added to

    def preload(self, events: list[Any]) -> None:
        self.rows = {row.pk: row for row in fetch(
            ProductCatalog, product_id=(e.originator_id for e in events))}
        # Which facet count each row is in before the batch (CatalogFacet), and with
        # its text, which term counts (CatalogTerm) and postings (CatalogPosting).
        self.facet_before = {pk: facet_key(row) for pk, row in self.rows.items()}
        self.text_before = {pk: text_of(row) for pk, row in self.rows.items()}

    def flush(self) -> None:
        for pk in self.changed:
            self.rows[pk].document = render(self.rows[pk])
        # Each changed product's facet count now (CatalogFacet, CatalogTerm).
        facet_after = {pk: facet_key(self.rows[pk]) for pk in self.changed}
        # The products whose postings change (their SKU, name or category), and whose
        # term counts move (those, and a new band or stock).
        retexted = sorted(pk for pk in self.changed
                          if self.text_before.get(pk) != text_of(self.rows[pk]))
        moved = sorted(set(retexted).union(
            pk for pk in self.changed if self.facet_before.get(pk) != facet_after[pk]))
        counts_terms = moved and read_connection.vendor == "postgresql"
        if counts_terms and (known := [pk for pk in moved if pk in self.facet_before]):
            count_terms(-1, known)  # as the rows are before this batch
        upsert(ProductCatalog, (self.rows[pk] for pk in self.changed))
        if counts_terms:
            count_terms(1, moved)
            if retexted:
                post_terms(retexted)
        self._count_facets(facet_after)
        if self.words:
            CatalogWord.objects.bulk_create(
                [CatalogWord(word=word) for word in sorted(self.words)], ignore_conflicts=True
            )

    def _count_facets(self, facet_after: dict[UUID, tuple[str, int, bool]]) -> None:
        """Move each changed product from its old facet count to its new one."""
        delta: Counter[tuple[str, int, bool]] = Counter()
        for pk, after in facet_after.items():
            before = self.facet_before.get(pk)
            if before != after:
                if before is not None:
                    delta[before] -= 1
                delta[after] += 1
        changes = [(*key, n) for key, n in sorted(delta.items()) if n]
        if not changes:
            return
        table = CatalogFacet._meta.db_table
        with read_connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (category, band, in_stock, count) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (category, band, in_stock) DO UPDATE "
                f"SET count = {table}.count + excluded.count",
                changes,
            )
            cursor.execute(f"DELETE FROM {table} WHERE count = 0")

    def _newer(self, event: Any) -> ProductCatalog | None:
        """The product's row if ``event`` is newer than what it shows, else None."""
        row = self.rows.get(event.originator_id)
        if row is None:
            raise LookupError(f"Product {event.originator_id} is not in the catalog.")
        if row.version >= event.originator_version:
            return None
        return row

    def _changed(self, row: ProductCatalog, event: Any) -> None:
        row.stock_available = row.stock - row.reserved
        row.version = event.originator_version
        self.changed.add(row.product_id)

    @handles(Product.Registered)
    def registered(self, event: Product.Registered) -> None:
        if event.originator_id in self.rows:
            return
        row = new_row(
            ProductCatalog,
            product_id=event.originator_id,
            sku=event.sku,
            name=event.name,
            category=event.category,
            price=event.price,
            stock=event.stock,
            reserved=0,
            created_at=event.timestamp,
        )
        self.rows[row.product_id] = row
        self.words.update(words(row.sku, row.name, row.category))
        self._changed(row, event)

    @handles(Product.Renamed)
    def renamed(self, event: Product.Renamed) -> None:
        if row := self._newer(event):
            row.name = event.name
            self.words.update(words(row.name))
            self._changed(row, event)

    @handles(Product.Repriced)
    def repriced(self, event: Product.Repriced) -> None:
        if row := self._newer(event):
            row.price = event.price
            self._changed(row, event)

    @handles(Product.Restocked)
    def restocked(self, event: Product.Restocked) -> None:
        if row := self._newer(event):
            row.stock += event.quantity
            self._changed(row, event)

    @handles(Product.StockReserved)
    def stock_reserved(self, event: Product.StockReserved) -> None:
        if row := self._newer(event):
            row.reserved += event.quantity
            self._changed(row, event)

    @handles(Product.StockReleased)
    def stock_released(self, event: Product.StockReleased) -> None:
        if row := self._newer(event):
            row.reserved -= event.quantity
            self._changed(row, event)


class ProductNames:
    """Keeps a projection's own ``ProductName`` table (``product_model``): a product's
    SKU and name from ``Product.Registered``, its name from ``Product.Renamed``. The
    projector preloads ``products`` and upserts those in ``changed_products``."""

    product_model: ClassVar[type[ProductName]]
    products: dict[UUID, ProductName]
    changed_products: set[UUID]

    @handles(Product.Registered)
    def product_registered(self, event: Product.Registered) -> None:
        if event.originator_id in self.products:
            return
        self.products[event.originator_id] = new_row(
            self.product_model,
            product_id=event.originator_id,
            sku=event.sku,
            name=event.name,
            version=event.originator_version,
        )
        self.changed_products.add(event.originator_id)

    @handles(Product.Renamed)
    def product_renamed(self, event: Product.Renamed) -> None:
        self.rename_product(event)

    def rename_product(self, event: Product.Renamed) -> ProductName | None:
        """Rename the product; returns it, or None when this rename was applied before."""
        product = self.products.get(event.originator_id)
        if product is None:
            raise LookupError(f"Product {event.originator_id} was renamed before registered.")
        if product.version >= event.originator_version:
            return None
        product.name = event.name
        product.version = event.originator_version
        self.changed_products.add(product.product_id)
        return product


class OrderHistoryProjector(ProductNames, Projector):
    """``OrderHistory``: each order with its named lines and its shipment, one row.

    Lines are named from ``OrderHistoryProduct`` (this projection's own product-name
    table). A rename rewrites the name in every past order with ONE ``UPDATE`` per
    renamed product per batch (:meth:`_rename_in_past_orders`), not one per order.
    """

    name = "order_history"
    models = (OrderHistory, OrderHistoryProduct)
    product_model = OrderHistoryProduct

    def begin(self) -> None:
        self.products: dict[UUID, OrderHistoryProduct] = {}
        self.orders: dict[UUID, OrderHistory] = {}
        self.order_of_shipment: dict[UUID, UUID] = {}
        self.changed_products: set[UUID] = set()
        self.changed_orders: set[UUID] = set()
        self.renamed: dict[UUID, str] = {}  # product id -> its latest name in the batch
        self.forgotten: set[int] = set()  # user ids of customers forgotten in the batch

    def preload(self, events: list[Any]) -> None:
        product_ids: set[UUID] = set()
        order_ids: set[UUID] = set()
        shipment_ids: set[UUID] = set()
        for event in events:
            if isinstance(event, Order.Placed):
                order_ids.add(event.originator_id)
                product_ids.update(as_uuid(line["product_id"]) for line in event.lines)
            elif isinstance(event, Product.Registered | Product.Renamed):
                product_ids.add(event.originator_id)
            elif isinstance(event, Shipment.Created):
                order_ids.add(event.order_id)
            elif isinstance(
                event, Shipment.Dispatched | Shipment.WentInTransit | Shipment.Delivered
            ):
                shipment_ids.add(event.originator_id)
            elif not isinstance(event, Customer.Forgotten):
                order_ids.add(event.originator_id)
        self.products = {row.pk: row for row in fetch(OrderHistoryProduct,
                                                      product_id=product_ids)}
        for row in fetch(OrderHistory, match="OR", order_id=order_ids,
                         shipment_id=shipment_ids):
            self._keep(row)

    def flush(self) -> None:
        upsert(OrderHistoryProduct, (self.products[pk] for pk in self.changed_products))
        for pk in self.changed_orders:
            self.orders[pk].document = render(self.orders[pk])
        upsert(OrderHistory, (self.orders[pk] for pk in self.changed_orders))
        # Rows the bulk UPDATEs change outside this batch get their documents again.
        stale: set[UUID] = set()
        for product_id, name in self.renamed.items():
            stale.update(self._rename_in_past_orders(product_id, name))
        if self.forgotten:
            forgotten = OrderHistory.objects.filter(customer_id__in=self.forgotten)
            stale.update(forgotten.values_list("order_id", flat=True))
            forgotten.update(customer=FORGOTTEN_CUSTOMER, shipping_address=None)
        rerender(OrderHistory, sorted(stale - self.changed_orders))

    def _keep(self, row: OrderHistory) -> None:
        self.orders[row.order_id] = row
        if row.shipment_id:
            self.order_of_shipment[row.shipment_id] = row.order_id

    # --- products --------------------------------------------------------------------

    @handles(Product.Renamed)
    def product_renamed(self, event: Product.Renamed) -> None:
        product = self.rename_product(event)
        if product is None:
            return
        self.renamed[product.product_id] = event.name
        # Rows of this batch are written by flush() as they are in memory: rename
        # them here; rows already in the table are renamed by one UPDATE in flush().
        product_id = str(product.product_id)
        for row in self.orders.values():
            for line in row.lines:
                if line["product_id"] == product_id:
                    line["product_name"] = event.name

    def _rename_in_past_orders(self, product_id: UUID, name: str) -> list[UUID]:
        """Set ``product_name`` in every order line of the product: one UPDATE. The
        ids of the orders it changed."""
        table = read_connection.ops.quote_name(OrderHistory._meta.db_table)
        with read_connection.cursor() as cursor:
            if read_connection.vendor == "postgresql":
                # @> uses the GIN index on lines; WITH ORDINALITY keeps line order.
                cursor.execute(
                    f"""
                    UPDATE {table} AS o SET lines = (
                        SELECT jsonb_agg(
                            CASE WHEN line->>'product_id' = %(product_id)s
                                 THEN jsonb_set(line, '{{product_name}}', to_jsonb(%(name)s::text))
                                 ELSE line END
                            ORDER BY position)
                        FROM jsonb_array_elements(o.lines) WITH ORDINALITY AS l(line, position)
                    )
                    WHERE o.lines @> %(contains)s::jsonb
                    RETURNING o.order_id
                    """,
                    {
                        "product_id": str(product_id),
                        "name": name,
                        "contains": json.dumps([{"product_id": str(product_id)}]),
                    },
                )
            else:
                # SQLite: json_each walks the array in order, json_group_array rebuilds it.
                cursor.execute(
                    f"""
                    UPDATE {table} SET lines = (
                        SELECT json_group_array(
                            CASE WHEN json_extract(line.value, '$.product_id') = %s
                                 THEN json_set(line.value, '$.product_name', %s)
                                 ELSE json(line.value) END)
                        FROM json_each({table}.lines) AS line
                    )
                    WHERE EXISTS (
                        SELECT 1 FROM json_each({table}.lines) AS line
                        WHERE json_extract(line.value, '$.product_id') = %s
                    )
                    RETURNING order_id
                    """,
                    [str(product_id), name, str(product_id)],
                )
            return [as_uuid(row[0]) for row in cursor.fetchall()]

    # --- orders ----------------------------------------------------------------------

    def _order(self, order_id: UUID) -> OrderHistory:
        row = self.orders.get(order_id)
        if row is None:
            raise LookupError(f"Order {order_id} is not in the order history.")
        return row

    def _newer_order_event(self, event: Any) -> OrderHistory | None:
        row = self._order(event.originator_id)
        if row.version >= event.originator_version:
            return None
        row.version = event.originator_version
        self.changed_orders.add(row.order_id)
        return row

    def _line(self, line: dict) -> dict:
        product_id = as_uuid(line["product_id"])
        product = self.products.get(product_id)
        unit_price = as_decimal(line["unit_price"])
        return {
            "product_id": str(product_id),
            "sku": line["sku"],
            "product_name": product.name if product else line["sku"],
            "quantity": line["quantity"],
            "unit_price": money(unit_price),
            "line_total": money(unit_price * line["quantity"]),
        }

    @handles(Order.Placed)
    def order_placed(self, event: Order.Placed) -> None:
        if event.originator_id in self.orders:
            return
        self._keep(
            new_row(
                OrderHistory,
                order_id=event.originator_id,
                number=self.notification_id,
                customer_id=event.customer_id,
                # None once the customer is forgotten: their key is gone.
                customer=event.customer or FORGOTTEN_CUSTOMER,
                status=PLACED,
                total=event.total,
                shipping_address=event.shipping_address,
                placed_at=event.timestamp,
                version=event.originator_version,
                lines=[self._line(line) for line in event.lines],
            )
        )
        self.changed_orders.add(event.originator_id)

    @handles(Order.Cancelled)
    def order_cancelled(self, event: Order.Cancelled) -> None:
        if row := self._newer_order_event(event):
            row.status = CANCELLED

    @handles(Order.Shipped)
    def order_shipped(self, event: Order.Shipped) -> None:
        if row := self._newer_order_event(event):
            row.status = SHIPPED
            row.shipment_id = event.shipment_id
            self.order_of_shipment[event.shipment_id] = row.order_id

    @handles(Order.Delivered)
    def order_delivered(self, event: Order.Delivered) -> None:
        if row := self._newer_order_event(event):
            row.status = DELIVERED

    @handles(Customer.Forgotten)
    def customer_forgotten(self, event: Customer.Forgotten) -> None:
        """Their name and addresses leave every order of theirs (rows in the table by
        one UPDATE in ``flush``; the batch's own rows here)."""
        self.forgotten.add(event.user_id)
        for row in self.orders.values():
            if row.customer_id == event.user_id:
                row.customer, row.shipping_address = FORGOTTEN_CUSTOMER, None
                self.changed_orders.add(row.order_id)

    # --- shipments -------------------------------------------------------------------

    @handles(Shipment.Created)
    def shipment_created(self, event: Shipment.Created) -> None:
        row = self._order(event.order_id)
        if row.shipment_id == event.originator_id and row.shipment_version:
            return
        row.shipment_id = event.originator_id
        row.carrier = event.carrier
        self.order_of_shipment[event.originator_id] = row.order_id
        self._shipment_moved(row, event, shipping.CREATED)

    @handles(Shipment.Dispatched)
    def shipment_dispatched(self, event: Shipment.Dispatched) -> None:
        self._shipment_event(event, shipping.DISPATCHED)

    @handles(Shipment.WentInTransit)
    def shipment_went_in_transit(self, event: Shipment.WentInTransit) -> None:
        self._shipment_event(event, shipping.IN_TRANSIT)

    @handles(Shipment.Delivered)
    def shipment_delivered(self, event: Shipment.Delivered) -> None:
        self._shipment_event(event, shipping.DELIVERED)

    def _shipment_event(self, event: Any, status: str) -> None:
        order_id = self.order_of_shipment.get(event.originator_id)
        if order_id is None:
            raise LookupError(f"Shipment {event.originator_id} belongs to no known order.")
        row = self._order(order_id)
        if (row.shipment_version or 0) < event.originator_version:
            self._shipment_moved(row, event, status)

    def _shipment_moved(self, row: OrderHistory, event: Any, status: str) -> None:
        row.shipment_status = status
        row.shipment_updated_at = event.timestamp
        row.shipment_version = event.originator_version
        self.changed_orders.add(row.order_id)


class SalesProjector(ProductNames, Projector):
    """Sales per UTC day and per product per day, for the dashboard and the sales API.

    A read model added to a shop with history: its checkpoint starts at 0 and the
    ordinary catch-up backfills it batch by batch. ``SalesOrder`` remembers each
    order's day and lines, so a placement counts once (re-applied, it is skipped) and
    a cancellation moves the order out of that day's orders, units and revenue and
    into its ``cancelled`` count, once.
    """

    name = "sales"
    models = (SalesOrder, SalesDaily, SalesProductDaily, SalesProduct)
    product_model = SalesProduct

    def begin(self) -> None:
        self.orders: dict[UUID, SalesOrder] = {}
        self.days: dict[date, SalesDaily] = {}
        self.product_days: dict[tuple[date, UUID], SalesProductDaily] = {}
        self.products: dict[UUID, SalesProduct] = {}
        self.changed_orders: set[UUID] = set()
        self.changed_days: set[date] = set()
        self.changed_product_days: set[tuple[date, UUID]] = set()
        self.changed_products: set[UUID] = set()

    def preload(self, events: list[Any]) -> None:
        order_ids = {
            e.originator_id for e in events if isinstance(e, Order.Placed | Order.Cancelled)
        }
        self.orders = {row.pk: row for row in fetch(SalesOrder, order_id=order_ids)}
        days = {sales_day(e) for e in events if isinstance(e, Order.Placed)}
        days.update(order.day for order in self.orders.values())
        product_ids = {
            as_uuid(line["product_id"])
            for e in events if isinstance(e, Order.Placed) for line in e.lines
        }
        product_ids.update(
            UUID(line["product_id"]) for order in self.orders.values() for line in order.lines
        )
        self.days = {row.pk: row for row in fetch(SalesDaily, day=days)}
        self.product_days = {
            (row.day, row.product_id): row
            for row in fetch(SalesProductDaily, day=days, product_id=product_ids)
        }
        self.products = {row.pk: row for row in fetch(SalesProduct, product_id=(
            e.originator_id for e in events if isinstance(e, Product.Registered | Product.Renamed)
        ))}

    def flush(self) -> None:
        upsert(SalesProduct, (self.products[pk] for pk in self.changed_products))
        upsert(SalesOrder, (self.orders[pk] for pk in self.changed_orders))
        upsert(SalesDaily, (self.days[day] for day in self.changed_days))
        upsert(
            SalesProductDaily,
            (self.product_days[key] for key in self.changed_product_days),
            unique_fields=["day", "product_id"],
        )

    @handles(Order.Placed)
    def order_placed(self, event: Order.Placed) -> None:
        if event.originator_id in self.orders:
            return
        lines = [
            {
                "product_id": str(line["product_id"]),
                "quantity": line["quantity"],
                "revenue": money(as_decimal(line["unit_price"]) * line["quantity"]),
            }
            for line in event.lines
        ]
        order = new_row(SalesOrder, order_id=event.originator_id, day=sales_day(event), lines=lines)
        self.orders[order.order_id] = order
        self.changed_orders.add(order.order_id)
        self._count(order, +1)

    @handles(Order.Cancelled)
    def order_cancelled(self, event: Order.Cancelled) -> None:
        order = self.orders.get(event.originator_id)
        if order is None:
            raise LookupError(f"Order {event.originator_id} was cancelled before placed.")
        if order.cancelled:
            return
        order.cancelled = True
        self.changed_orders.add(order.order_id)
        self._count(order, -1)
        self._day(order.day).cancelled += 1

    def _count(self, order: SalesOrder, sign: int) -> None:
        """Add (+1) or take out (-1) the order's lines in its day's figures."""
        day = self._day(order.day)
        day.orders += sign
        for line in order.lines:
            quantity, revenue = sign * line["quantity"], sign * Decimal(line["revenue"])
            day.units += quantity
            day.revenue += revenue
            key = (order.day, UUID(line["product_id"]))
            row = self.product_days.get(key)
            if row is None:
                row = self.product_days[key] = new_row(
                    SalesProductDaily,
                    day=order.day, product_id=key[1], units=0, revenue=Decimal("0")
                )
            row.units += quantity
            row.revenue += revenue
            self.changed_product_days.add(key)

    def _day(self, day: date) -> SalesDaily:
        row = self.days.get(day)
        if row is None:
            row = self.days[day] = new_row(
                SalesDaily,
                day=day, orders=0, units=0, revenue=Decimal("0"), cancelled=0
            )
        self.changed_days.add(day)
        return row


def sales_day(event: Any) -> date:
    """The UTC day an event happened (sales are counted by the day of placement)."""
    return event.timestamp.astimezone(UTC).date()


class ActivityProjector(Projector):
    """``Activity``: who did what, one row per act (see the model), for staff.

    Each row is written once, keyed by the event's position, and never rewritten by a
    re-applied event (its "from" price is the one before it). ``ActivitySubject`` names
    the aggregates: a product by SKU (and its price, for "repriced from"), an order by
    its number, a shipment by its order's. ``Customer.Forgotten`` takes the customer's
    username out of every row they acted in.
    """

    name = "activity"
    models = (Activity, ActivitySubject)

    def begin(self) -> None:
        self.rows: dict[int, Activity] = {}
        self.subjects: dict[UUID, ActivitySubject] = {}
        self.changed_subjects: set[UUID] = set()
        self.known: set[int] = set()
        self.forgotten: set[int] = set()

    def preload(self, events: list[Any]) -> None:
        ids = {event.originator_id for event in events}
        ids.update(event.order_id for event in events if isinstance(event, Shipment.Created))
        self.subjects = {row.pk: row for row in fetch(ActivitySubject, aggregate_id=ids)}

    def handle(self, events: Iterable[Any]) -> None:
        events = list(events)
        self.known = {row.pk for row in fetch(
            Activity, position=[item.notification_id for item in events])}
        super().handle(events)

    def flush(self) -> None:
        upsert(ActivitySubject, (self.subjects[pk] for pk in self.changed_subjects))
        upsert(Activity, self.rows.values())
        if self.forgotten:
            Activity.objects.filter(
                actor_kind="customer", actor_user_id__in=self.forgotten
            ).update(actor_username=None)

    def _subject(self, event: Any, subject: str, price: Any = None) -> None:
        row = self.subjects.get(event.originator_id)
        if row is None:
            row = self.subjects[event.originator_id] = new_row(
                ActivitySubject,
                aggregate_id=event.originator_id, subject=subject, version=0)
        if row.version < event.originator_version:
            row.subject, row.version = subject, event.originator_version
            if price is not None:
                row.price = price
            self.changed_subjects.add(row.pk)

    def _named(self, aggregate_id: UUID, default: str = "?") -> ActivitySubject:
        return self.subjects.get(aggregate_id) or new_row(
            ActivitySubject,
            aggregate_id=aggregate_id, subject=default, version=0)

    def _record(self, event: Any, kind: str, subject: str, **details: Any) -> None:
        if self.notification_id in self.known:
            return  # applied before: the row stays as first written
        meta = self.metadata
        self.rows[self.notification_id] = new_row(
            Activity,
            position=self.notification_id, at=event.timestamp,
            actor_kind=meta.actor.kind, actor_user_id=meta.actor.user_id,
            actor_username=meta.actor.username, via=meta.via,
            request_id=meta.request_id, causation_id=meta.causation_id,
            aggregate_type=kind, aggregate_id=event.originator_id, subject=subject,
            type=type(event).__qualname__, details=details,
        )

    # --- products ----------------------------------------------------------------

    @handles(Product.Registered)
    def product_registered(self, event: Product.Registered) -> None:
        self._record(event, "product", event.sku, name=event.name, price=money(event.price))
        self._subject(event, event.sku, price=event.price)

    @handles(Product.Renamed)
    def product_renamed(self, event: Product.Renamed) -> None:
        self._record(event, "product", self._named(event.originator_id).subject,
                     name=event.name)
        self._subject(event, self._named(event.originator_id).subject)

    @handles(Product.Repriced)
    def product_repriced(self, event: Product.Repriced) -> None:
        product = self._named(event.originator_id)
        before = money(product.price) if product.price is not None else None
        self._record(event, "product", product.subject, **{
            "from": before, "to": money(event.price)})
        self._subject(event, product.subject, price=event.price)

    @handles(Product.Restocked)
    def product_restocked(self, event: Product.Restocked) -> None:
        self._record(event, "product", self._named(event.originator_id).subject,
                     quantity=event.quantity)

    # --- orders and shipments ----------------------------------------------------

    @handles(Order.Placed)
    def order_placed(self, event: Order.Placed) -> None:
        number = str(self.notification_id)
        self._record(event, "order", number, total=money(event.total),
                     lines=len(event.lines))
        self._subject(event, number)

    @handles(Order.Cancelled)
    def order_cancelled(self, event: Order.Cancelled) -> None:
        self._record(event, "order", self._named(event.originator_id).subject,
                     reason=event.reason)

    @handles(Shipment.Created)
    def shipment_created(self, event: Shipment.Created) -> None:
        number = self._named(event.order_id).subject
        self._record(event, "shipment", number, carrier=event.carrier)
        self._subject(event, number)

    @handles(Shipment.Dispatched, Shipment.WentInTransit, Shipment.Delivered)
    def shipment_moved(self, event: Any) -> None:
        self._record(event, "shipment", self._named(event.originator_id).subject)

    # --- customers ---------------------------------------------------------------

    @handles(Customer.Forgotten)
    def customer_forgotten(self, event: Customer.Forgotten) -> None:
        self._record(event, "customer", f"account {event.user_id}")
        self.forgotten.add(event.user_id)
        for row in self.rows.values():  # rows of this batch, before flush writes them
            if row.actor_kind == "customer" and row.actor_user_id == event.user_id:
                row.actor_username = None


ALL_PROJECTORS: list[type[Projector]] = [
    OrderHistoryProjector, ProductCatalogProjector, SalesProjector, ActivityProjector
]
