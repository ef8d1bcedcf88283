"""Cursor pages read by ``StoredRows`` equal those DRF reads from the ORM's queryset:
the same rows (with the same Python values) and the same links, walking forward by
``next`` and back by ``previous``, through runs of orders placed at the same instant
(DRF's cursor then counts an offset). Checked on PostgreSQL
(tests/integration/test_stored_rows.py) and on SQLite
(tests/sqlite/test_embedded_default.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from projections.apis import OrderPagination
from projections.models import OrderHistory
from projections.pages import StoredRows

CUSTOMER = 424_242
#: Orders per instant: runs of ties, the longest longer than some page sizes.
TIES = [1, 3, 1, 4, 2, 1, 5]
FIELDS = ("placed_at", "order_id", "document")


def orders() -> list[UUID]:
    """A customer's orders (and one of another customer), newest first."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    made = []
    n = 0
    for instant, tied in enumerate(TIES):
        for _ in range(tied):
            n += 1
            made.append(OrderHistory(
                order_id=UUID(int=n), number=None, customer_id=CUSTOMER,
                customer="walker", status="placed", total=Decimal("1.00"),
                placed_at=start + dt.timedelta(seconds=instant), version=1,
                document=f'{{"n":{n}}}'))
    made.append(OrderHistory(
        order_id=UUID(int=10_000), customer_id=CUSTOMER + 1, customer="other",
        status="placed", total=Decimal("1.00"), placed_at=start, version=1, document="{}"))
    OrderHistory.objects.bulk_create(made)
    return [row["order_id"] for row in OrderHistory.objects.filter(customer_id=CUSTOMER)
            .order_by("-placed_at", "-order_id").values("order_id")]


def page(rows: Any, url: str) -> tuple[list[dict], str | None, str | None]:
    """The rows, next link and previous link of the page at ``url``."""
    request = Request(APIRequestFactory().get(url))
    paginator = OrderPagination()
    found = paginator.paginate_queryset(rows, request)
    return found, paginator.get_next_link(), paginator.get_previous_link()


def cursor_walk_mismatches() -> list:
    """Every page where the two differ, and any walk that misses or repeats an order
    (empty: none)."""
    expected = orders()
    queryset = OrderHistory.objects.filter(customer_id=CUSTOMER)
    by_orm = queryset.values(*FIELDS)
    stored = StoredRows.of(queryset).values(*FIELDS)
    mismatches: list = []

    def walk(url: str | None, link: int) -> tuple[list[list[UUID]], str | None]:
        """The pages from ``url`` on, following the next (1) or previous (2) links;
        and the other link of the last page."""
        pages, other = [], None
        while url is not None and len(pages) <= len(expected):
            ours, theirs = page(stored, url), page(by_orm, url)
            if ours != theirs:
                mismatches.append((url, ours, theirs))
            pages.append([row["order_id"] for row in ours[0]])
            url, other = ours[link], ours[3 - link]
        return pages, other

    for size in (1, 2, 3, 4, 6, 100):
        forward, previous = walk(f"http://testserver/api/queries/orders/?page_size={size}", 1)
        if [order for ids in forward for order in ids] != expected:
            mismatches.append((size, "forward", forward))
        # Back from the last page by the previous links, to the first.
        back, _ = walk(previous, 2)
        back = [*back[::-1], forward[-1]]
        if [order for ids in back for order in ids] != expected:
            mismatches.append((size, "back", back))
    return mismatches
