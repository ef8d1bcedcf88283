"""The sales projection: figures per UTC day of placement and per product, cancellations
moved into ``cancelled`` on the day the order was placed, renames, and the backfill of
a shop whose log existed before the projection did."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from catalog.services import product_rename
from demo.management.commands.seed_demo import event_clock
from orders.services import order_cancel
from projections.models import Checkpoint, SalesDaily
from projections.registry import get_projector
from projections.runner import catch_up, projection_position, rebuild
from projections.selectors import sales_by_product, sales_daily
from projections.status import projection_statuses
from shop.eventstore import head_position
from tests.givens import place, project, register, rows

pytestmark = pytest.mark.django_db

MONDAY, TUESDAY = date(2026, 11, 2), date(2026, 11, 3)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def daily(start=MONDAY, end=TUESDAY) -> list[tuple]:
    return [(d.day, d.orders, d.units, d.revenue, d.cancelled)
            for d in sales_daily(start=start, end=end)]


def by_product(start=MONDAY, end=TUESDAY) -> list[tuple]:
    return [(p["sku"], p["product_name"], p["units"], p["revenue"])
            for p in sales_by_product(start=start, end=end)]


@pytest.fixture
def week_of_sales(event_store, customer, other_customer):
    """Monday: two orders (one cancelled on Tuesday); Tuesday: one order, just before
    midnight UTC; the mug renamed afterwards."""
    with event_clock(at(MONDAY, 0)):
        mug = register("MUG-1", "Blue mug", price="19.99", stock=100)
        pen = register("PEN-1", "Black pen", price="1.50", stock=100)
    with event_clock(at(MONDAY, 9)):
        kept = place(customer, (mug, 2), (pen, 4))  # 39.98 + 6.00
    with event_clock(at(MONDAY, 23)):
        cancelled = place(other_customer, (mug, 1))  # 19.99
    with event_clock(datetime(2026, 11, 3, 23, 59, 59, tzinfo=UTC)):
        place(customer, (pen, 10))  # 15.00
    with event_clock(at(TUESDAY, 10)):
        order_cancel(order_id=cancelled, user_id=other_customer.pk, is_staff=False)
    product_rename(product_id=mug, name="Azure mug")
    return kept, cancelled


def test_daily_figures_count_orders_on_the_day_they_were_placed(week_of_sales):
    project("sales")

    assert daily() == [
        (MONDAY, 1, 6, Decimal("45.98"), 1),  # the cancelled order left Monday's figures
        (TUESDAY, 1, 10, Decimal("15.00"), 0),  # the cancellation did not touch Tuesday
    ]
    assert daily(start=TUESDAY) == [(TUESDAY, 1, 10, Decimal("15.00"), 0)]


def test_per_product_figures_over_a_range_with_current_names(week_of_sales):
    project("sales")

    assert by_product() == [
        ("MUG-1", "Azure mug", 2, Decimal("39.98")),
        ("PEN-1", "Black pen", 14, Decimal("21.00")),
    ]
    assert by_product(start=TUESDAY) == [("PEN-1", "Black pen", 10, Decimal("15.00"))]


def test_sales_backfill_a_log_that_existed_before_the_projection(week_of_sales, customer):
    # the shop ran without the sales projection: the others are caught up, sales never ran
    project("order_history", "product_catalog")
    Checkpoint.objects.filter(projection="sales").delete()
    assert SalesDaily.objects.count() == 0
    [status] = [s for s in projection_statuses() if s.name == "sales"]
    assert status.position == 0 and status.lag_events == head_position()

    # the ordinary catch-up backfills it, in small batches (one transaction each)
    applied = catch_up(get_projector("sales"), batch_size=2)

    assert applied > 2
    assert projection_position("sales") == head_position()
    assert daily() == [(MONDAY, 1, 6, Decimal("45.98"), 1), (TUESDAY, 1, 10, Decimal("15.00"), 0)]
    backfilled = [rows(model) for model in get_projector("sales").models]
    rebuild(get_projector("sales"))
    assert [rows(model) for model in get_projector("sales").models] == backfilled


def test_sales_projection_follows_new_orders_after_its_backfill(week_of_sales, customer):
    project("sales")
    mug = register("TEA-1", "Green tea", price="3.00")
    with event_clock(at(TUESDAY, 12)):
        place(customer, (mug, 3))

    project("sales")

    assert daily(start=TUESDAY) == [(TUESDAY, 2, 13, Decimal("24.00"), 0)]
