"""The query API: thin views over the read-model tables (and one order's event history).

Every view derives from :class:`QueryApi`, the one freshness mechanism:

- each response (errors included) carries ``X-Projection-Position``: the position of
  the projection(s) behind the endpoint, read BEFORE the data, so the rows returned
  are at least that fresh;
- ``?min_position=N`` (an integer ≥ 0) waits until that position is at least N, for up
  to ``&wait=`` seconds (a finite number ≥ 0, default 5; a larger value than 30 is
  clamped to 30), then answers; if the projection is still behind: 503
  ``projection_behind`` with a ``Retry-After`` header (whole seconds, at least 1).
- A position beyond the log's head is 400 ``invalid`` at once (no command returned it).
- At most ``settings.QUERY_WAIT_SLOTS`` requests of one process wait at a time, so
  waiting clients never hold every thread; past that, 503 ``projection_behind`` at once.
- Cursors are checked before they reach the database: one that does not decode, or
  whose position is no value of the ordering field, is 400 ``invalid`` (so is a bad
  ``page_size``).

Lists are ``{"next", "previous", "results"}``. The order's event history is short and
not paginated, but keeps that shape (``next`` and ``previous`` are always null).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import QueryDict
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.pagination import Cursor
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param
from rest_framework.views import APIView

from orders.domain import STATUSES as ORDER_STATUSES
from projections.activity import TYPES as ACTIVITY_TYPES
from projections.activity import sentence
from projections.documents import documents, renders
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.pages import DOCUMENT_RENDERERS, StoredDocument, StoredPage, StoredRows
from projections.registry import PROJECTORS
from projections.runner import wait_for
from projections.search import SORTS, Search, search_parameters, search_products
from projections.selectors import (
    activity_list,
    order_events,
    order_get,
    order_list,
    product_list,
    projection_list,
    projections_position,
    sales_by_product,
    sales_daily,
)
from shipping.domain import STATUSES as SHIPMENT_STATUSES
from shop.api import CursorPage, enum_field, error_responses
from shop.databases import (
    READ,
    reading_from,
    replicas,
    serving,
    switch_to_primary,
    usable_replica,
)
from shop.errors import ApplicationError, InvalidInput
from shop.eventstore import head_position
from shop.metadata import KINDS, WAYS_IN

POSITION_HEADER = "X-Projection-Position"
# Which database answered: "primary" (the read database) or a replica's alias.
READ_FROM_HEADER = "X-Read-From"
DEFAULT_WAIT_SECONDS = 5.0
MAX_WAIT_SECONDS = 30.0


class ProjectionBehind(ApplicationError):
    code = "projection_behind"
    status = 503
    default_detail = "The read model has not caught up with the requested position yet."
    retry_after = 1


class UtcDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC with an explicit ``+00:00`` offset (DRF would write ``Z``)."""

    def to_representation(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat()


class FiniteFloatField(serializers.FloatField):
    """A float that is a real number: ``nan``, ``inf`` and ``1e999`` are invalid."""

    default_error_messages = {"not_finite": "A finite number is required."}

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("not_finite")
        return value


class FreshnessSerializer(serializers.Serializer):
    min_position = serializers.IntegerField(
        min_value=0,
        required=False,
        help_text="Wait until the read model has processed this notification id "
        "(the `position` a command returned).",
    )
    wait = FiniteFloatField(
        min_value=0,
        required=False,
        default=DEFAULT_WAIT_SECONDS,
        help_text=f"Seconds to wait for min_position (default {DEFAULT_WAIT_SECONDS:g}, "
        f"larger values are clamped to {MAX_WAIT_SECONDS:g}).",
    )

    class Meta:
        ref_name = "Freshness"


FRESHNESS_PARAMETERS = [
    OpenApiParameter(
        "min_position",
        {"type": "integer", "minimum": 0},
        description="Wait until the read model has processed this notification id (the "
        "`position` a command returned); 503 projection_behind if it does not in time.",
    ),
    OpenApiParameter(
        "wait",
        {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
         "default": DEFAULT_WAIT_SECONDS},
        description="Seconds to wait for min_position: default 5, at most 30.",
    ),
    OpenApiParameter(
        POSITION_HEADER,
        OpenApiTypes.INT,
        location=OpenApiParameter.HEADER,
        response=True,
        description="The log position the read model behind this answer has processed.",
    ),
    OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        location=OpenApiParameter.HEADER,
        response=[429, 503],
        description="Seconds after which to retry (a projection_behind answer, a throttle).",
    ),
]
# 400, 401, 429 and the rest every endpoint can answer are added by shop.schema.
FRESHNESS_RESPONSES = error_responses(503, e503="projection_behind")


class WaitSlots:
    """The ``min_position`` waits one process allows at once (``QUERY_WAIT_SLOTS``).

    A wait holds a web thread; with a cap below the thread count, some threads are
    always free for other requests however many clients wait.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = 0
        self._semaphore = threading.BoundedSemaphore(1)

    def _current(self) -> threading.BoundedSemaphore:
        size = max(1, int(settings.QUERY_WAIT_SLOTS))
        with self._lock:
            if size != self._size:  # first use, or the setting changed (tests)
                self._size, self._semaphore = size, threading.BoundedSemaphore(size)
            return self._semaphore

    @contextmanager
    def claim(self) -> Iterator[bool]:
        """Yield whether a slot was free (never blocks); free it on exit."""
        semaphore = self._current()
        acquired = semaphore.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                semaphore.release()


WAIT_SLOTS = WaitSlots()


#: How many valid sets of query parameters a process keeps the validated values of.
VALIDATED_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=VALIDATED_CACHE_SIZE)
def _validated(
    serializer_class: type[serializers.Serializer], params: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, Any]:
    data = QueryDict(mutable=True)
    for name, values in params:
        data.setlist(name, list(values))
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)  # an error is raised, never kept
    return dict(serializer.validated_data)


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request's query parameters validated by ``serializer_class`` (400 if not
    valid). Validating costs a copy of every field of the serializer, so a process keeps
    the values of the last ``VALIDATED_CACHE_SIZE`` valid sets of the parameters it
    names (most queries send none, or repeat a search, a filter or a page): the
    serializers used here read only those parameters, nothing of the request else."""
    params = request.query_params
    named = tuple((name, tuple(params.getlist(name)))
                  for name in serializer_class._declared_fields if name in params)
    return dict(_validated(serializer_class, named))


class QueryApi(APIView):
    """Base of every query view: the freshness header and the ``min_position`` wait."""

    renderer_classes = DOCUMENT_RENDERERS

    #: The projections whose tables the view reads; the position is the slowest one's.
    projections: ClassVar[tuple[str, ...]]

    position: int | None = None
    #: The view reads the position in the same statement as its page
    #: (:meth:`stored_page`): no separate checkpoint read unless ``min_position``.
    position_with_page: ClassVar[bool] = False

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """The whole request reads one database: a usable replica, else the primary."""
        with reading_from(usable_replica() if replicas() else None):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        params = validated(FreshnessSerializer, request)
        min_position = params.get("min_position")
        if min_position is None and self.position_with_page:
            return
        self.position = self.current_position()
        if min_position is None or self.position >= min_position:
            return
        head = head_position()
        if min_position > head:
            raise InvalidInput.field(
                "min_position",
                f"Position {min_position} is beyond the log's head ({head}); use the "
                "position a command returned.",
            )
        with WAIT_SLOTS.claim() as claimed:
            if not claimed:
                raise ProjectionBehind(
                    "Too many clients are waiting for the read model; retry shortly.",
                    retry_after=1,
                )
            self.position = self.wait_for(
                min_position, min(params["wait"], MAX_WAIT_SECONDS)
            )
        if self.position < min_position:
            raise ProjectionBehind(
                f"The read model has processed the log up to {self.position}, not yet "
                f"{min_position}; retry shortly.",
                retry_after=self.retry_after_seconds(),
            )

    def current_position(self) -> int:
        return projections_position(self.projections)

    def wait_for(self, min_position: int, timeout: float) -> int:
        """Wait for each projection in turn, all within one deadline: on the read
        primary (LISTEN works there only), then, when a replica serves, until the replica
        has replayed that checkpoint; a replica still behind at the deadline hands the
        request to the primary, which has it."""
        deadline = time.monotonic() + timeout
        replica = serving()
        with reading_from(None):
            for name in self.projections:
                remaining = max(deadline - time.monotonic(), 0.0)
                if wait_for(name, min_position, remaining) < min_position:
                    return self.current_position()
        if replica == READ:
            return self.current_position()
        delay = 0.002
        while (position := self.current_position()) < min_position:
            if time.monotonic() >= deadline:
                switch_to_primary()
                return self.current_position()
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return position

    def retry_after_seconds(self) -> int:
        """1 s while the projections run; until the next retry while one is parked."""
        retry_at = (
            Checkpoint.objects.among(self.projections).failed()
            .filter(retry_at__isnull=False)
            .order_by("-retry_at")
            .values_list("retry_at", flat=True)
            .first()
        )
        if retry_at is None:
            return 1
        return max(1, math.ceil((retry_at - timezone.now()).total_seconds()))

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        position = self.position
        if position is None:  # an error before initial() read it (401, 403, 400)
            try:
                position = self.current_position()
            except DatabaseError:
                position = None
        if position is not None:
            response[POSITION_HEADER] = str(position)
        response[READ_FROM_HEADER] = "primary" if serving() == READ else serving()
        return response

    def paginated(self, queryset: Any, serializer_class: type[serializers.Serializer]) -> Response:
        """One page of ``queryset`` by the view's ``pagination_class`` (a cursor)."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def stored_page(self, queryset: Any) -> Response:
        """One page of ``queryset``'s stored documents: only the ordering's columns and
        the documents are read, by one prepared statement (``StoredRows``).

        Unless ``initial`` read the position already, the page's own statement reads it
        (one snapshot: the rows are exactly that fresh). An empty page carries no
        position: then the position is read first and the page again."""
        model = queryset.model
        columns = {name.lstrip("-") for name in self.pagination_class.ordering}
        columns |= {model._meta.pk.attname, "document"}
        position_of = None
        if self.position is None:
            [position_of] = self.projections
        rows = StoredRows.of(queryset, position_of=position_of).values(*sorted(columns))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, self.request, view=self)
        if self.position is None and page:
            self.position = page[0]["read_position"]
        elif self.position is None:
            self.position = self.current_position()
            paginator = self.pagination_class()
            page = paginator.paginate_queryset(rows, self.request, view=self)
        return Response(StoredPage(paginator.get_next_link(), paginator.get_previous_link(),
                                   documents(page, model)))


def unpaginated(results: list) -> Response:
    """A short list in the same shape as a paginated one."""
    return Response({"next": None, "previous": None, "results": results})


def unpaginated_schema(name: str, results: serializers.Field) -> serializers.Serializer:
    """The documented shape of :func:`unpaginated`: ``results``, and ``next`` and
    ``previous`` always null."""
    return inline_serializer(
        name, {"next": always_null(), "previous": always_null(), "results": results}
    )


class QueryCursorPagination(CursorPage):
    """DRF's cursor pagination that answers 400 ``invalid`` for a malformed cursor or
    ``page_size`` instead of a 404 or, once the position reaches the database, a 500.
    """

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param or "")
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise InvalidInput.field(
                self.page_size_query_param, "A whole number of at least 1 is required."
            )
        return min(size, self.max_page_size or size)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
        except (exceptions.NotFound, UnicodeError):
            raise self.invalid_cursor() from None
        if cursor is not None and cursor.position is not None:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                if "\x00" in cursor.position:
                    raise DjangoValidationError("NUL")
                field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, TypeError):
                raise self.invalid_cursor() from None
        return cursor

    def invalid_cursor(self) -> InvalidInput:
        return InvalidInput.field(self.cursor_query_param, "This is not a cursor the API gave out.")


@extend_schema_field({"type": "null", "description": "Always null: the list is not paginated."})
class AlwaysNullField(serializers.Field):
    pass


def always_null() -> serializers.Field:
    return AlwaysNullField()


def plain_representation(field: serializers.Field) -> Callable[[Any], Any]:
    """``field.to_representation``, or a plain function that answers the same for the
    values a read-model row holds (DRF's own ``CharField``, ``IntegerField``, ``UUIDField``
    and ``DecimalField`` as strings; a field that overrides the method keeps it)."""
    represent = type(field).to_representation
    if represent is serializers.CharField.to_representation or (
        represent is serializers.UUIDField.to_representation
        and field.uuid_format == "hex_verbose"
    ):
        return str
    if represent is serializers.IntegerField.to_representation:
        return int
    if (
        represent is serializers.DecimalField.to_representation
        and field.decimal_places is not None
        and getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
        and not field.localize
        and not field.normalize_output
    ):
        # DRF quantizes (context rounding, as format() rounds) then writes '{:f}'.
        spec = f".{field.decimal_places}f"
        fallback = field.to_representation

        def decimal_string(value: Any) -> Any:
            return format(value, spec) if type(value) is Decimal else fallback(value)

        return decimal_string
    return field.to_representation


# A serializer of read-model rows: each declared field's representation of the row's
# attribute (or of the row, for ``source="*"``), without DRF's per-field machinery for
# related objects. The declared fields are both the schema and what is sent. The plan
# (name, source, function per field) is made once per class from the declared fields,
# so a request neither copies the fields (DRF deep-copies them for every serializer
# instance) nor calls generic field methods per value. (A comment, not a docstring:
# the schema would show a docstring as a description.)
class RowSerializer(serializers.Serializer):

    @classmethod
    def row_plan(cls) -> list[tuple[str, str, Callable[[Any], Any]]]:
        plan = cls.__dict__.get("_row_plan")  # each class its own, never a parent's
        if plan is None:
            template = cls()  # unbound and without data: the plan keeps no instance
            plan = [(f.field_name, f.source, plain_representation(f))
                    for f in template._readable_fields]
            cls._row_plan = plan  # a race only builds the same plan twice
        return plan

    @classmethod
    def represent(cls, row: Any) -> dict:
        """The row's representation without a serializer instance (what
        ``cls(row).data`` holds): how a projector renders a row's stored document."""
        data = {}
        for name, source, represent in cls.row_plan():
            value = row if source == "*" else getattr(row, source)
            data[name] = None if value is None else represent(value)
        return data

    def to_representation(self, row: Any) -> dict:
        return self.represent(row)


# --- products ---------------------------------------------------------------------


FACETS_SCHEMA = {
    "type": "object",
    "description": "Present when the request has a search parameter (q, search, category, "
    "min_price, max_price, in_stock, sort). Counts of the filtered set, each facet without "
    "its own filter.",
    "required": ["category", "price"],
    "properties": {
        "category": {
            "type": "array",
            "description": "Products per category (non-zero counts), most first.",
            "items": {
                "type": "object",
                "required": ["value", "count"],
                "properties": {"value": {"type": "string"},
                               "count": {"type": "integer", "minimum": 1}},
            },
        },
        "price": {
            "type": "array",
            "description": "Products per price band [min, max) (max null: no upper bound), "
            "every band, cheapest first.",
            "items": {
                "type": "object",
                "required": ["min", "max", "count"],
                "properties": {
                    "min": {"type": "string", "format": "decimal"},
                    "max": {"type": ["string", "null"], "format": "decimal"},
                    "count": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}


class ProductPagination(QueryCursorPagination):
    """By SKU with DRF's cursor; a search's results (ordered by rank or a ``sort``) are
    paged by an offset in the same opaque cursor, up to ``max_offset`` results."""

    ordering = ("sku", "product_id")
    max_offset = 1000

    def get_paginated_response_schema(self, schema: dict) -> dict:
        page = super().get_paginated_response_schema(schema)
        page["properties"]["facets"] = FACETS_SCHEMA
        return page

    def search_window(self, request: Request) -> tuple[int, int]:
        """The offset and size of the page of a search's rows that ``request`` asks for
        (with one more row: is there a next page)."""
        cursor = self.decode_cursor(request)
        offset = min(cursor.offset, self.max_offset) if cursor else 0
        return offset, self.get_page_size(request)

    def search_page(self, rows: Any, request: Request) -> tuple[list, str | None, str | None]:
        """One page of a search's ``rows``: the rows, and the next and previous links."""
        self._model = rows.model
        self.base_url = request.build_absolute_uri()
        self.page_size = size = self.get_page_size(request)
        cursor = self.decode_cursor(request)
        offset = min(cursor.offset, self.max_offset) if cursor else 0
        page = list(rows[offset:offset + size + 1])
        following = offset + size
        next_link = None
        if len(page) > size and following <= self.max_offset:
            next_link = self.encode_cursor(Cursor(offset=following, reverse=False, position=None))
        previous_link = None
        if offset > 0:
            earlier = max(offset - size, 0)
            previous_link = (
                self.encode_cursor(Cursor(offset=earlier, reverse=False, position=None))
                if earlier else remove_query_param(self.base_url, self.cursor_query_param)
            )
        return page[:size], next_link, previous_link


class ProductSearchSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=200, required=False)
    search = serializers.CharField(max_length=200, required=False)
    category = serializers.CharField(max_length=100, required=False, allow_blank=True)
    min_price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), required=False)
    max_price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), required=False)
    in_stock = serializers.BooleanField(required=False, default=False)
    sort = serializers.ChoiceField(SORTS, required=False)

    class Meta:
        ref_name = "ProductSearch"

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # DRF reads an empty query parameter as absent; here it is a mistake (400),
        # except ``category=`` (the products without a category).
        blank = {name: ["This field may not be blank."] for name in self.fields
                 if name != "category" and data.get(name) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"min_price": ["min_price must not be more than max_price."]})
        q = attrs.pop("q", None)
        alias = attrs.pop("search", None)
        return {**attrs, "q": q if q is not None else alias}


class ProductListApi(QueryApi):
    """The catalog as shoppers see it: by SKU, or searched. Open to anyone."""

    permission_classes = [AllowAny]
    pagination_class = ProductPagination
    projections = ("product_catalog",)
    position_with_page = True

    @renders(ProductCatalog)
    class OutputSerializer(RowSerializer):
        product_id = serializers.UUIDField()
        sku = serializers.CharField()
        name = serializers.CharField()
        category = serializers.CharField()
        price = serializers.DecimalField(max_digits=12, decimal_places=2)
        stock_available = serializers.IntegerField()
        version = serializers.IntegerField(
            help_text='The product\'s version: send it as If-Match: "<version>" with a '
            "command on this product."
        )

        class Meta:
            ref_name = "ProductListItem"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", {"type": "string", "minLength": 1, "maxLength": 200},
                description="Ranked full-text search over name, SKU and category, "
                "typo-tolerant (1-200 characters after stripping; no NUL).",
            ),
            OpenApiParameter(
                "search", {"type": "string", "minLength": 1, "maxLength": 200},
                description="An alias of q (q wins if both are given).",
            ),
            OpenApiParameter("category", {"type": "string", "maxLength": 100},
                             description="Only this category (exact match)."),
            OpenApiParameter("min_price", {"type": "string", "format": "decimal"},
                             description="Only prices at least this (a decimal >= 0)."),
            OpenApiParameter("max_price", {"type": "string", "format": "decimal"},
                             description="Only prices at most this (>= min_price)."),
            OpenApiParameter("in_stock", {"type": "boolean"},
                             description="true: only products with stock_available > 0."),
            OpenApiParameter(
                "sort", {"type": "string", "enum": list(SORTS)},
                description="relevance (the default with q), price, -price, name, -created "
                "(newest first). Without q and sort: by SKU.",
            ),
            *FRESHNESS_PARAMETERS,
        ],
        responses={200: OutputSerializer(many=True), **FRESHNESS_RESPONSES},
        summary="The catalog, by SKU, or searched with filters, sorts and facets",
    )
    def get(self, request: Request) -> Response:
        if not search_parameters(request.query_params):
            return self.stored_page(product_list())
        params = validated(ProductSearchSerializer, request)
        pagination = self.pagination_class()
        # Unless initial() read it, the search reads the position no later than its
        # rows: in their statement, or first.
        (projection,) = self.projections
        found = search_products(
            Search(**params), window=pagination.search_window(request),
            position_of=projection if self.position is None else None,
        )
        if self.position is None:
            self.position = found.position
        page, next_link, previous_link = pagination.search_page(
            found.rows.values("product_id", "document"), request)
        return Response(StoredPage(next_link, previous_link, documents(page, ProductCatalog),
                                   {"facets": found.facets}))


# --- orders -----------------------------------------------------------------------


class OrderPagination(QueryCursorPagination):
    ordering = ("-placed_at", "-order_id")
    # A client showing a long history may ask for up to 100 orders a page.
    page_size_query_param = "page_size"
    max_page_size = 100


class OrderLineSerializer(serializers.Serializer):
    product_id = serializers.UUIDField()
    sku = serializers.CharField()
    product_name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ref_name = "OrderHistoryLine"


class AsStoredField(serializers.Field):
    """A JSON value the read model stores exactly as the API shows it: sent as is.
    ``schema`` documents it."""

    def __init__(self, schema: serializers.Field, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        extend_schema_field(schema)(self)

    def to_representation(self, value: Any) -> Any:
        return value


class OrderShipmentSerializer(RowSerializer):
    # The order's shipment, from the row's shipment columns (null without one).
    shipment_id = serializers.UUIDField()
    carrier = serializers.CharField()
    status = enum_field(
        "ShipmentStatus", SHIPMENT_STATUSES, serializers.CharField, source="shipment_status"
    )
    updated_at = UtcDateTimeField(source="shipment_updated_at")

    class Meta:
        ref_name = "OrderHistoryShipment"

    def to_representation(self, order: Any) -> dict | None:
        return None if order.shipment_id is None else super().to_representation(order)


@renders(OrderHistory)
class OrderOutputSerializer(RowSerializer):
    # The hot path of the order history: the row holds the lines exactly as the API
    # shows them, so they are sent as stored (no field serializer per line).
    order_id = serializers.UUIDField()
    number = serializers.IntegerField(
        allow_null=True,
        help_text="The order's number, to say aloud: the log position of its placement.",
    )
    customer = serializers.CharField(
        help_text='The username; "forgotten customer" once the customer is forgotten.')
    status = enum_field(
        "OrderStatus", ORDER_STATUSES, serializers.CharField,
        description="placed, then cancelled, or shipped (a shipment was created) and then "
        "delivered.",
    )
    placed_at = UtcDateTimeField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    shipping_address = serializers.CharField(
        allow_null=True, help_text="Null once the customer is forgotten.")
    version = serializers.IntegerField()
    lines = AsStoredField(OrderLineSerializer(many=True))
    shipment = OrderShipmentSerializer(source="*", allow_null=True, read_only=True)

    class Meta:
        ref_name = "OrderHistory"


class OrderListApi(QueryApi):
    """Order history, newest first: a customer's own orders; staff see everyone's."""

    permission_classes = [IsAuthenticated]
    pagination_class = OrderPagination
    projections = ("order_history",)
    position_with_page = True
    OutputSerializer = OrderOutputSerializer

    class FilterSerializer(serializers.Serializer):
        customer = serializers.CharField(required=False, allow_blank=True, max_length=150)
        number = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

        class Meta:
            ref_name = "OrderHistoryFilter"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "customer", str, description="Staff only: one customer's orders (username)."
            ),
            OpenApiParameter(
                "number", int, description="The order with this number (a positive integer)."
            ),
            *FRESHNESS_PARAMETERS,
        ],
        responses={200: OutputSerializer(many=True), **FRESHNESS_RESPONSES},
        summary="Order history, newest first (a customer's own; staff: everyone's)",
        operation_id="order_history_list",
    )
    def get(self, request: Request) -> Response:
        filters = validated(self.FilterSerializer, request)
        return self.stored_page(order_list(user=request.user, **filters))


class OrderDetailApi(QueryApi):
    """One order, for its owner or staff (another customer's order is not found)."""

    permission_classes = [IsAuthenticated]
    projections = ("order_history",)
    OutputSerializer = OrderOutputSerializer

    @extend_schema(
        parameters=FRESHNESS_PARAMETERS,
        responses={200: OutputSerializer, **FRESHNESS_RESPONSES},
        summary="One order (owner or staff)",
    )
    def get(self, request: Request, order_id) -> Response:
        order = order_get(user=request.user, order_id=order_id, only=("document",))
        return Response(StoredDocument(documents([order], OrderHistory)[0]))


class EventActorSerializer(serializers.Serializer):
    """Who caused an event. Staff see ``kind``, ``user_id`` and ``username``; a customer
    sees ``kind`` and ``name``: "you", or "the shop" for staff and the system."""

    kind = enum_field("ActorKind", KINDS, serializers.CharField)
    user_id = serializers.IntegerField(required=False, allow_null=True)
    username = serializers.CharField(required=False, allow_null=True)
    name = enum_field("ActorName", ("you", "the shop"), serializers.CharField,
                      required=False)

    class Meta:
        ref_name = "EventActor"


@extend_schema_field(EventActorSerializer)
class EventActorField(serializers.DictField):
    """The actor as the selector shaped it for the reader (``EventActorSerializer``
    documents both shapes; the keys a reader must not see are absent, not null)."""


class StaffOnlyField(serializers.CharField):
    """A value only staff are given: absent from a customer's entry (not null), null
    for staff when the event has none (written before metadata existed)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_null=True, **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        if self.field_name not in instance:
            raise serializers.SkipField()
        return super().get_attribute(instance)


def event_metadata_fields() -> dict[str, serializers.Field]:
    """The metadata an event's timeline entry carries (``via`` and the ids: staff)."""
    return {
        "actor": EventActorField(),
        "via": enum_field("WayIn", WAYS_IN, StaffOnlyField),
        "request_id": StaffOnlyField(),
        "causation_id": StaffOnlyField(),
    }


class OrderEventSerializer(serializers.Serializer):
    """``{type, version, timestamp, actor, data}`` (staff: also ``via``, ``request_id``,
    ``causation_id``); ``data`` is the event's own fields."""

    type = serializers.CharField()
    version = serializers.IntegerField()
    timestamp = UtcDateTimeField()
    data = serializers.DictField()

    def get_fields(self) -> dict[str, serializers.Field]:
        return {**super().get_fields(), **event_metadata_fields()}


class OrderPlacedLineSerializer(serializers.Serializer):
    product_id = serializers.UUIDField()
    sku = serializers.CharField()
    quantity = serializers.IntegerField(min_value=1)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ref_name = "OrderPlacedLine"


#: The ``data`` of each event type an order's timeline can hold.
ORDER_EVENT_DATA: dict[str, dict[str, serializers.Field]] = {
    "Order.Placed": {
        # Staff only. Null once the customer is forgotten: customer, shipping_address.
        "customer_id": serializers.IntegerField(required=False),
        "customer": serializers.CharField(allow_null=True),
        "lines": OrderPlacedLineSerializer(many=True),
        "total": serializers.DecimalField(max_digits=12, decimal_places=2),
        "shipping_address": serializers.CharField(allow_null=True),
    },
    "Order.Cancelled": {"reason": serializers.CharField(allow_blank=True)},
    "Order.Shipped": {"shipment_id": serializers.UUIDField()},
    "Order.Delivered": {},
}


def _event_serializer(event_type: str, data: dict[str, serializers.Field]) -> type:
    name = event_type.replace(".", "")  # OrderPlaced
    return inline_serializer(
        f"{name}Event",
        {
            "type": enum_field(None, [event_type], serializers.CharField),
            "version": serializers.IntegerField(min_value=1),
            "timestamp": UtcDateTimeField(),
            **event_metadata_fields(),
            "data": inline_serializer(f"{name}Data", dict(data)),
        },
    ).__class__


ORDER_EVENT_SCHEMA = PolymorphicProxySerializer(
    component_name="OrderEvent",
    serializers={
        event_type: _event_serializer(event_type, data)
        for event_type, data in ORDER_EVENT_DATA.items()
    },
    resource_type_field_name="type",
    many=True,
)


class OrderEventsApi(QueryApi):
    """The order's audit timeline, read from the event store (never the read model)."""

    permission_classes = [IsAuthenticated]
    projections = ("order_history",)

    OutputSerializer = OrderEventSerializer

    @extend_schema(
        parameters=FRESHNESS_PARAMETERS,
        responses={
            200: unpaginated_schema("OrderEventList", ORDER_EVENT_SCHEMA),
            **FRESHNESS_RESPONSES,
        },
        summary="The order's events, oldest first (owner or staff; not paginated)",
        operation_id="order_event_list",
    )
    def get(self, request: Request, order_id) -> Response:
        events = order_events(user=request.user, order_id=order_id)
        return unpaginated(self.OutputSerializer(events, many=True).data)


# --- activity ---------------------------------------------------------------------


class ActivityPagination(QueryCursorPagination):
    ordering = ("-position",)
    page_size_query_param = "page_size"
    max_page_size = 200


class ActivityApi(QueryApi):
    """Who did what, newest first (staff): one entry per act, with a sentence."""

    permission_classes = [IsAdminUser]
    pagination_class = ActivityPagination
    projections = ("activity",)

    class FilterSerializer(serializers.Serializer):
        actor = serializers.CharField(required=False, max_length=150)
        aggregate = serializers.CharField(required=False, max_length=64)
        type = serializers.ChoiceField(required=False, choices=ACTIVITY_TYPES)
        start = serializers.DateTimeField(required=False)
        end = serializers.DateTimeField(required=False)

        class Meta:
            ref_name = "ActivityFilter"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fields["from"] = self.fields.pop("start")  # see SalesRangeSerializer
            self.fields["to"] = self.fields.pop("end")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            start, end = attrs.get("start"), attrs.get("end")
            if start and end and start > end:
                raise serializers.ValidationError({"from": ["from must not be after to."]})
            return attrs

    class OutputSerializer(serializers.Serializer):
        position = serializers.IntegerField()
        at = UtcDateTimeField()
        actor = serializers.SerializerMethodField()
        via = enum_field("WayIn", WAYS_IN, serializers.CharField)
        request_id = serializers.CharField(allow_null=True)
        causation_id = serializers.CharField(allow_null=True)
        aggregate_type = enum_field(
            "ActivityAggregateType", ("product", "order", "shipment", "customer"),
            serializers.CharField)
        aggregate_id = serializers.UUIDField()
        subject = serializers.CharField(
            help_text="The aggregate as staff name it: a SKU, an order's number.")
        type = enum_field("ActivityType", ACTIVITY_TYPES, serializers.CharField)
        summary = serializers.SerializerMethodField()

        class Meta:
            ref_name = "Activity"

        @extend_schema_field(EventActorSerializer)
        def get_actor(self, row: Any) -> dict[str, Any]:
            return {"kind": row.actor_kind, "user_id": row.actor_user_id,
                    "username": row.actor_username}

        def get_summary(self, row: Any) -> str:
            return sentence(row)

    @extend_schema(
        parameters=[
            OpenApiParameter("actor", str, description=(
                "A username (staff or customer), or `system` for the shop's own acts.")),
            OpenApiParameter("aggregate", str, description=(
                "An aggregate id, a SKU or an order number (also its shipment's acts).")),
            OpenApiParameter("type", str, enum=list(ACTIVITY_TYPES),
                             description="One event type."),
            OpenApiParameter("from", OpenApiTypes.DATETIME,
                             description="From this time, inclusive (ISO 8601)."),
            OpenApiParameter("to", OpenApiTypes.DATETIME,
                             description="Until this time, inclusive (ISO 8601)."),
            *FRESHNESS_PARAMETERS,
        ],
        responses={200: OutputSerializer(many=True), **FRESHNESS_RESPONSES},
        summary="Who did what, newest first (staff)",
        operation_id="activity_list",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return self.paginated(activity_list(**filters.validated_data), self.OutputSerializer)


# --- projections ------------------------------------------------------------------


def projection_status_field() -> serializers.Field:
    return enum_field(
        "ProjectionStatus", (Checkpoint.OK, Checkpoint.FAILED), serializers.CharField,
        description="failed: parked before a failing event, retried with back-off.",
    )


class ProjectionLagSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    head = serializers.IntegerField()
    lag_events = serializers.IntegerField(min_value=0)
    lag_seconds = serializers.FloatField(allow_null=True)
    status = projection_status_field()

    class Meta:
        ref_name = "ProjectionLag"


class ProjectionsHealthSerializer(serializers.Serializer):
    """The projections' part of ``/api/health/`` (``projections.status``)."""

    worst_lag_events = serializers.IntegerField(min_value=0)
    worst_lag_seconds = serializers.FloatField(allow_null=True)
    failed = serializers.ListField(child=serializers.CharField())
    lagging = serializers.ListField(child=serializers.CharField())
    lag_alert_seconds = serializers.FloatField()
    each = serializers.DictField(child=ProjectionLagSerializer())

    class Meta:
        ref_name = "ProjectionsHealth"


class ProjectionListApi(QueryApi):
    """How far each projection has read the log, and why it stopped if it did (staff)."""

    permission_classes = [IsAdminUser]
    projections = tuple(sorted(PROJECTORS))

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        position = serializers.IntegerField()
        head = serializers.IntegerField()
        lag_events = serializers.IntegerField()
        lag_seconds = serializers.FloatField(allow_null=True)
        status = projection_status_field()
        last_error = serializers.CharField(allow_blank=True)
        error_position = serializers.IntegerField(allow_null=True)
        retry_at = UtcDateTimeField(allow_null=True)

        class Meta:
            ref_name = "Projection"

    @extend_schema(
        parameters=FRESHNESS_PARAMETERS,
        responses={
            200: unpaginated_schema("ProjectionList", OutputSerializer(many=True)),
            **FRESHNESS_RESPONSES,
        },
        operation_id="projection_status_list",
        summary="Each projection's position, the log's head and the lag (staff)",
    )
    def get(self, request: Request) -> Response:
        return unpaginated(self.OutputSerializer(projection_list(), many=True).data)


# --- sales ------------------------------------------------------------------------

SALES_DEFAULT_DAYS = 30
SALES_MAX_DAYS = 366


def utc_today() -> date:
    return timezone.now().astimezone(UTC).date()


class SalesRangeSerializer(serializers.Serializer):
    """``from``/``to`` (UTC days, inclusive); the last 30 days by default."""

    start = serializers.DateField(required=False, input_formats=["iso-8601"])
    end = serializers.DateField(required=False, input_formats=["iso-8601"])

    class Meta:
        ref_name = "SalesRange"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: the fields are declared as start/end (their
        # source, so the validated data's keys) and read from ?from=/?to=.
        self.fields["from"] = self.fields.pop("start")
        self.fields["to"] = self.fields.pop("end")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or utc_today()
        start = attrs.get("start") or end - timedelta(days=SALES_DEFAULT_DAYS - 1)
        if start > end:
            raise serializers.ValidationError({"from": ["from must not be after to."]})
        if (end - start).days + 1 > SALES_MAX_DAYS:
            raise serializers.ValidationError(
                {"to": [f"The range may span at most {SALES_MAX_DAYS} days."]}
            )
        return {"start": start, "end": end}


SALES_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE,
                     description="First UTC day, inclusive (default: 29 days before `to`)."),
    OpenApiParameter("to", OpenApiTypes.DATE,
                     description="Last UTC day, inclusive (default: today). At most 366 days "
                     "from `from`."),
    *FRESHNESS_PARAMETERS,
]


def sales_schema(list_name: str, output: type[serializers.Serializer], summary: str):
    """The OpenAPI description of a sales view's ``get``."""
    return extend_schema(
        parameters=SALES_PARAMETERS,
        responses={
            200: unpaginated_schema(list_name, output(many=True)),
            **FRESHNESS_RESPONSES,
        },
        summary=summary,
    )


class SalesApi(QueryApi):
    """Base of the sales views (staff): the ``from``/``to`` range, the sales projection."""

    permission_classes = [IsAdminUser]
    projections = ("sales",)

    OutputSerializer: type[serializers.Serializer]

    def answer(self, request: Request, query: Callable[..., list]) -> Response:
        """Rows of ``query`` over the request's ``from``/``to`` range, unpaginated."""
        params = SalesRangeSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        rows = query(start=params.validated_data["start"], end=params.validated_data["end"])
        return unpaginated(self.OutputSerializer(rows, many=True).data)


class SalesDailyApi(SalesApi):
    """Sales per UTC day of placement: one row per day with orders, oldest first."""

    class OutputSerializer(serializers.Serializer):
        date = serializers.DateField(source="day")
        orders = serializers.IntegerField(help_text="Orders placed that day, not cancelled.")
        units = serializers.IntegerField()
        revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
        cancelled = serializers.IntegerField(
            help_text="Orders placed that day and cancelled since."
        )

        class Meta:
            ref_name = "SalesDay"

    @sales_schema("SalesDayList", OutputSerializer, "Sales per day (staff)")
    def get(self, request: Request) -> Response:
        return self.answer(request, sales_daily)


class SalesProductsApi(SalesApi):
    """Sales per product over the range, highest revenue first."""

    class OutputSerializer(serializers.Serializer):
        product_id = serializers.UUIDField()
        sku = serializers.CharField()
        product_name = serializers.CharField(help_text="The product's current name.")
        units = serializers.IntegerField()
        revenue = serializers.DecimalField(max_digits=14, decimal_places=2)

        class Meta:
            ref_name = "SalesProduct"

    @sales_schema(
        "SalesProductList", OutputSerializer, "Sales per product, highest revenue first (staff)"
    )
    def get(self, request: Request) -> Response:
        return self.answer(request, sales_by_product)
