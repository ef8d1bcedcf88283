"""Pages of stored documents (``projections.documents``): the rows a page is read from,
and the response, whose JSON renderer writes each document's text into the page as it
is, never decoding and re-encoding it.

:class:`StoredRows` reads a page's rows: a read model's rows in an order, as one
hand-written statement, prepared (``shop.databases.prepared_cursor``), where an ORM
query would be built and compiled for every page.

A view answers ``Response(StoredPage(...))`` or ``Response(StoredDocument(...))``; the
page's envelope (``next``, ``previous``, ``results`` and any extra keys such as
``facets``) is rendered around the documents by DRF's own JSON renderer, so the bytes
are those the serializers would have given. The browsable API (an ``indent``) gets the
decoded data instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import Model, QuerySet
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

from projections.models import Checkpoint
from shop.databases import prepared_cursor, row_converter, serving

#: A cursor's filter: the lookups DRF's cursor pagination makes, as SQL.
CURSOR_LOOKUPS = {"lt": "<", "gt": ">"}


@dataclass(frozen=True)
class StoredRows:
    """``model``'s rows in an order, as one statement that a page reads prepared: no
    ORM query built and compiled per page, and a plan PostgreSQL makes once. It stands
    for the queryset where a page is taken: DRF's cursor pagination orders it
    (:meth:`order_by`), filters it by the cursor's position (:meth:`filter`) and slices
    it; ``ProductPagination.search_page`` slices it.

    A slice reads its rows as dicts of :meth:`values`' fields, converted as the ORM's
    ``values()`` converts them, with ``read_position``, the position of projection
    ``position_of``, read in the same statement (one snapshot).

    ``where``: conditions over the model's table, each SQL with its parameters.
    ``order``: the ORDER BY's SQL and its parameters (:meth:`order_by`: by fields)."""

    model: type[Model]
    where: tuple[tuple[str, tuple], ...] = ()
    order: tuple[str, tuple] = ("1", ())
    fields: tuple[str, ...] = ()
    position_of: str | None = None

    @classmethod
    def of(cls, queryset: QuerySet, *, order: tuple[str, tuple] = ("1", ()),
           position_of: str | None = None) -> StoredRows:
        """The rows a queryset of one table filters, in ``order`` (the queryset's own
        ordering is not kept): Django compiles its conditions, nothing else."""
        query = queryset.query
        if (len(query.alias_map) > 1 or query.annotations or query.extra or query.distinct
                or query.is_sliced or query.combinator or query.group_by):
            raise ValueError("StoredRows reads one table's rows by conditions only, not "
                             f"by joins, annotations, DISTINCT, slices or unions: {query}")
        compiler = query.get_compiler(queryset.db)
        try:
            where = (compiler.compile(query.where),)
        except FullResultSet:
            where = ()
        except EmptyResultSet:
            where = (("1 = 0", ()),)
        return cls(queryset.model, tuple((sql, tuple(p)) for sql, p in where), order,
                   position_of=position_of)

    def order_by(self, *names: str) -> StoredRows:
        """By these fields (``-``: descending), as the ORM orders them."""
        order = ", ".join(f"{self._column(name.lstrip('-'))}"
                          f"{' DESC' if name.startswith('-') else ''}" for name in names)
        return replace(self, order=(order or "1", ()))

    def values(self, *fields: str) -> StoredRows:
        return replace(self, fields=fields)

    def filter(self, **lookups: Any) -> StoredRows:
        """Only ``<field>__lt`` and ``<field>__gt`` (a cursor's position, as text): the
        value is prepared as the ORM's lookup prepares it."""
        where = list(self.where)
        connection = connections[serving()]
        for lookup, value in lookups.items():
            name, _, kind = lookup.rpartition("__")
            if kind not in CURSOR_LOOKUPS:
                raise ValueError(f"StoredRows filters by {set(CURSOR_LOOKUPS)}, not {lookup}")
            field = self.model._meta.get_field(name)
            value = field.get_db_prep_value(field.get_prep_value(value), connection,
                                            prepared=True)
            where.append((f"{self._column(name)} {CURSOR_LOOKUPS[kind]} %s", (value,)))
        return replace(self, where=tuple(where))

    def __getitem__(self, page: slice) -> list[dict[str, Any]]:
        if not isinstance(page, slice) or page.stop is None or page.step is not None:
            raise TypeError("StoredRows reads a page: a slice with a stop")
        start = page.start or 0
        limit = max(page.stop - start, 0)
        sql, params = self.sql()
        fields = self._read_fields()
        alias = serving()
        with prepared_cursor(alias) as cursor:
            cursor.execute(f"{sql} LIMIT %s OFFSET %s", [*params, limit, start])
            found = cursor.fetchall()
        convert = row_converter(self.model, fields, alias)
        rows = []
        for found_row in found:
            row = dict(zip(fields, convert(found_row[:len(fields)]), strict=True))
            if self.position_of is not None:
                row["read_position"] = found_row[-1]
            rows.append(row)
        return rows

    def sql(self) -> tuple[str, list[Any]]:
        """The statement (without the page's LIMIT and OFFSET) and its parameters."""
        select = [self._column(name) for name in self._read_fields()]
        params: list[Any] = []
        if self.position_of is not None:
            position_sql, position_params = Checkpoint.objects.position_sql(
                self.position_of)
            select.append(f"({position_sql}) AS read_position")
            params += position_params
        where = " AND ".join(f"({sql})" for sql, _ in self.where) or "1 = 1"
        for _sql, where_params in self.where:
            params += where_params
        order, order_params = self.order
        params += order_params
        table = connections[serving()].ops.quote_name(self.model._meta.db_table)
        return (f"SELECT {', '.join(select)} FROM {table} WHERE {where} ORDER BY {order}",
                params)

    def _read_fields(self) -> tuple[str, ...]:
        """:meth:`values`' fields, or every column of the model."""
        return self.fields or tuple(f.name for f in self.model._meta.concrete_fields)

    def _column(self, name: str) -> str:
        return connections[serving()].ops.quote_name(self.model._meta.get_field(name).column)


@dataclass
class StoredPage:
    next: str | None
    previous: str | None
    documents: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # keys after "results"

    def decoded(self) -> dict[str, Any]:
        return {"next": self.next, "previous": self.previous,
                "results": [json.loads(doc) for doc in self.documents], **self.extra}


@dataclass
class StoredDocument:
    text: str

    def decoded(self) -> Any:
        return json.loads(self.text)


class DocumentRenderer(JSONRenderer):
    """DRF's JSON renderer, which writes stored documents as they are."""

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict | None = None) -> bytes:
        if not isinstance(data, StoredPage | StoredDocument):
            return super().render(data, accepted_media_type, renderer_context)
        if self.get_indent(accepted_media_type, renderer_context or {}):
            return super().render(data.decoded(), accepted_media_type, renderer_context)
        if isinstance(data, StoredDocument):
            return data.text.encode()

        def value(v: Any) -> bytes:
            return super(DocumentRenderer, self).render(v) if v is not None else b"null"

        parts = [b'{"next":', value(data.next), b',"previous":', value(data.previous),
                 b',"results":[', ",".join(data.documents).encode(), b"]"]
        for key, extra in data.extra.items():
            parts += [b",", super().render(key), b":", super().render(extra)]
        parts.append(b"}")
        return b"".join(parts)


#: The renderers of a view that answers stored documents.
DOCUMENT_RENDERERS = [DocumentRenderer, BrowsableAPIRenderer]
