"""The back office's dashboard: sales of the last 30 days, top products, orders by
status and by shipment status, and each projection's lag. Read from the read models
(and the projections' checkpoints) only, like any query; money in the shop's
currency, days as the locale writes them."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

from babel.dates import format_skeleton
from django.db.models import Count
from django.http import HttpRequest
from django.utils import timezone

from backoffice.charts import Bar, bar_list_chart, column_chart
from backoffice.money import locale, money, money_whole
from backoffice.names import label
from orders.domain import CANCELLED, DELIVERED, PLACED, SHIPPED
from projections.models import OrderHistory
from projections.selectors import sales_by_product, sales_daily
from projections.status import projection_statuses
from shipping.domain import STATUSES as SHIPMENT_STATUSES

DAYS = 30
TOP_PRODUCTS = 8
REVENUE_COLOR, ORDERS_COLOR, CANCELLED_COLOR = "#417690", "#79aec8", "#c0392b"
STATUS_COLOR, SHIPMENT_COLOR = "#5b8c5a", "#b07d2b"


def day_label(day, skeleton: str = "MMMd") -> str:
    """A day as the locale writes it: "Dec 6" ("MMMd"), "Sun, Dec 6" ("MMMEd")."""
    return format_skeleton(skeleton, day, locale=locale())


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    end = timezone.now().astimezone(UTC).date()
    start = end - timedelta(days=DAYS - 1)
    by_day = {row.day: row for row in sales_daily(start=start, end=end)}
    days = [start + timedelta(days=n) for n in range(DAYS)]
    revenue_bars, order_bars = [], []
    for day in days:
        row = by_day.get(day)
        revenue = row.revenue if row else Decimal("0")
        orders, cancelled = (row.orders, row.cancelled) if row else (0, 0)
        tick, long = day_label(day), day_label(day, "MMMEd")
        revenue_bars.append(Bar(tick, revenue, f"{long}: {money(revenue)}"))
        order_bars.append(Bar(tick, orders, f"{long}: {orders} orders, "
                                            f"{cancelled} cancelled", stacked=cancelled))
    totals = {
        "revenue": money(sum((r.revenue for r in by_day.values()), Decimal("0"))),
        "orders": sum(r.orders for r in by_day.values()),
        "units": sum(r.units for r in by_day.values()),
        "cancelled": sum(r.cancelled for r in by_day.values()),
    }
    top = sales_by_product(start=start, end=end, limit=TOP_PRODUCTS)
    status_counts = dict(
        OrderHistory.objects.values_list("status").annotate(n=Count("order_id")).order_by()
    )
    shipment_counts = dict(
        OrderHistory.objects.exclude(shipment_id=None)
        .values_list("shipment_status").annotate(n=Count("order_id")).order_by()
    )
    no_shipment = OrderHistory.objects.filter(shipment_id=None).exclude(
        status=CANCELLED
    ).count()
    projections = projection_statuses()
    return {
        "sales_days": DAYS,
        "sales_totals": totals,
        "revenue_chart": column_chart(
            revenue_bars, color=REVENUE_COLOR, label_every=5,
            axis_format=money_whole, aria_label=f"Revenue per day, last {DAYS} days",
        ),
        "orders_chart": column_chart(
            order_bars, color=ORDERS_COLOR, stacked_color=CANCELLED_COLOR, label_every=5,
            axis_format=lambda v: f"{v:g}", counts=True,
            aria_label=f"Orders per day (cancelled on top), last {DAYS} days",
        ),
        "top_products_chart": bar_list_chart(
            [Bar(p["product_name"], p["revenue"],
                 f"{p['sku']}, {p['units']} units: {money(p['revenue'])}") for p in top],
            color=REVENUE_COLOR, aria_label="Top products by revenue",
        ),
        "status_chart": bar_list_chart(
            [Bar(label(s), status_counts.get(s, 0), f"{label(s)}: {status_counts.get(s, 0)}")
             for s in (PLACED, SHIPPED, DELIVERED, CANCELLED)],
            color=STATUS_COLOR, aria_label="Orders by status",
        ),
        "shipment_chart": bar_list_chart(
            [Bar("not shipped yet", no_shipment, f"not shipped yet: {no_shipment}")]
            + [Bar(label(s), shipment_counts.get(s, 0), f"{label(s)}: {shipment_counts.get(s, 0)}")
               for s in SHIPMENT_STATUSES],
            color=SHIPMENT_COLOR, aria_label="Orders by shipment status",
        ),
        "projections": projections,
    }
