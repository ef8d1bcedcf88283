"""Documents: each read-model row's public JSON, rendered when its projector writes the
row and served as stored (``projections.pages``).

A document is exactly what the API's serializer and JSON renderer make of the row
(``OrderOutputSerializer`` for an order, ``ProductListApi.OutputSerializer`` for a
product), rendered by that same code, so the bytes a client gets do not change. A
projector renders a row's document whenever it changes the row: in memory before its
upsert, and after the bulk UPDATEs of a rename or a forgotten customer, for the rows
those UPDATEs touched (:func:`rerender`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import Model
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer
from rest_framework.serializers import Serializer

from projections.models import OrderHistory
from shop.databases import READ, read_connection

RERENDER_BATCH = 500


@functools.cache
def _renderer() -> JSONRenderer:
    return JSONRenderer()


@functools.cache
def _encoder() -> json.JSONEncoder:
    """The encoder ``JSONRenderer.render`` makes for each call (no indent), made once."""
    renderer = _renderer()
    return renderer.encoder_class(
        ensure_ascii=renderer.ensure_ascii,
        allow_nan=not renderer.strict,
        separators=SHORT_SEPARATORS if renderer.compact else LONG_SEPARATORS,
    )


def render_json(data: Any) -> str:
    """``data`` as the API's JSON renderer writes it (compact, UTF-8): its steps
    (``JSONRenderer.render``), with one encoder for every call."""
    if data is None:
        return ""
    text = _encoder().encode(data)
    # As the renderer does: a strict JavaScript subset.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


#: The serializer of each model's documents, registered by the query API's module with
#: :func:`renders` (imported by ``ProjectionsConfig.ready`` in every process: web,
#: worker, commands), so this module needs no import of the API's.
#: Keyed by model label, so that a migration's historical models render too.
SERIALIZERS: dict[str, type[Serializer]] = {}


def renders(model: type[Model]) -> Callable[[type[Serializer]], type[Serializer]]:
    """Class decorator: this serializer renders ``model``'s documents."""
    def register(serializer: type[Serializer]) -> type[Serializer]:
        SERIALIZERS[model._meta.label] = serializer
        return serializer
    return register


def render(row: Model) -> str:
    """The row's document: its serializer's output, rendered. An order's lines are
    first put in the key order the database gives them back in (PostgreSQL's ``jsonb``
    orders an object's keys), as the API has always sent them."""
    label = row._meta.label
    if label == OrderHistory._meta.label:
        row.lines = [as_stored(line) for line in row.lines]
    serializer = SERIALIZERS[label]
    # A row serializer represents a row without an instance (its fields' plan, made
    # once); the same output as ``serializer(row).data``.
    represent = getattr(serializer, "represent", None)
    return render_json(represent(row) if represent else serializer(row).data)


def as_stored(line: dict[str, Any]) -> dict[str, Any]:
    """A JSON object's keys in the order the read database stores them: on PostgreSQL
    ``jsonb``'s (shorter keys first, then bytewise); SQLite keeps the text as written."""
    if read_connection.vendor != "postgresql":
        return line
    keys = tuple(line)
    order = _stored_order(keys)
    return line if order == keys else {key: line[key] for key in order}


@functools.lru_cache(maxsize=256)
def _stored_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """``jsonb``'s order of these keys (an order's lines all have the same few)."""
    return tuple(sorted(keys, key=lambda key: (len(key.encode()), key.encode())))


def rerender(model: type[Model], keys: Iterable[Any], *, using: str = READ) -> int:
    """Render again the documents of ``model``'s rows with these primary keys (rows a
    bulk UPDATE changed); how many. ``using``: the database (a migration passes the one
    it migrates)."""
    keys = list(keys)
    rows_of = model.objects.using(using)
    for start in range(0, len(keys), RERENDER_BATCH):
        rows = list(rows_of.filter(pk__in=keys[start:start + RERENDER_BATCH]))
        for row in rows:
            row.document = render(row)
        rows_of.bulk_update(rows, ["document"])
    return len(keys)


def documents(rows: Iterable[Model | dict[str, Any]], model: type[Model]) -> list[str]:
    """The stored documents of ``model``'s rows, read as instances or as values (a
    page reads values: no model instances); a row without one yet (written before
    documents existed, not yet migrated) is rendered from the table."""
    pk = model._meta.pk.attname
    stored = []
    for row in rows:
        values = row if isinstance(row, dict) else row.__dict__
        document = values["document"]
        if document is None:
            document = render(model.objects.get(pk=values[pk]))
        stored.append(document)
    return stored
