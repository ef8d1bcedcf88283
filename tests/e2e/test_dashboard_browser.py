"""The admin dashboard in a real headless browser: after logging in, staff land on it
and see the charts drawn from the seeded sales, orders and projections.

The screenshot is saved in the test's temporary directory (and, when
``DASHBOARD_SCREENSHOT`` names a file, there too: that is how docs/dashboard.png is
made).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.browser import admin_page, needs_chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]

PRODUCTS = [("MUG-1", "Blue mug", "12.50"), ("TEE-M", "Logo T-shirt", "19.99"),
            ("BAG-1", "Canvas tote bag", "9.90"), ("PEN-3", "Gel pens, pack of 3", "4.20")]
# (days ago, customer, [(product index, quantity)]) for the last two weeks
ORDERS = [(13, "john", [(0, 2)]), (12, "jane", [(1, 1), (3, 2)]), (10, "john", [(2, 3)]),
          (9, "jane", [(0, 1)]), (7, "john", [(1, 2)]), (6, "jane", [(1, 1), (2, 1)]),
          (5, "john", [(3, 5)]), (4, "jane", [(0, 4)]), (3, "john", [(1, 3), (0, 1)]),
          (2, "jane", [(2, 2)]), (1, "john", [(1, 1)]), (0, "jane", [(0, 2), (3, 1)])]


@pytest.fixture
def seeded_shop(event_store, make_user):
    """Two weeks of orders (two cancelled, some shipped) with the read models caught up."""
    from demo.management.commands.seed_demo import event_clock
    from orders.services import order_cancel, order_place
    from projections.registry import PROJECTORS, get_projector
    from projections.runner import catch_up
    from shipping.services import shipment_change_status, shipment_create
    from tests.givens import register

    users = {name: make_user(name) for name in ("john", "jane")}
    now = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    product_ids = [register(sku, name, price=price, stock=1000) for sku, name, price in PRODUCTS]
    placed = []
    for days_ago, customer, lines in ORDERS:
        with event_clock(now - timedelta(days=days_ago)):
            saved, _ = order_place(
                customer_id=users[customer].pk, customer=customer,
                lines=[(product_ids[i], qty) for i, qty in lines],
                shipping_address="1 Harbour Road",
            )
            placed.append(saved.aggregate_id)
    for order_id in placed[2:4]:
        order_cancel(order_id=order_id, user_id=0, is_staff=True)
    for order_id, status in zip(placed[4:8], ["dispatched", "in_transit", "delivered", "created"],
                                strict=True):
        shipment = shipment_create(order_id=order_id, carrier="DHL")
        if status != "created":
            shipment_change_status(shipment_id=shipment.aggregate_id, status=status)
    for name in PROJECTORS:
        catch_up(get_projector(name))
    return placed


def test_staff_land_on_the_dashboard_and_see_its_charts(live_server, make_user, seeded_shop,
                                                        tmp_path):
    from playwright.sync_api import expect

    from projections.models import SalesDaily

    make_user("boss", is_staff=True)
    revenue_days = SalesDaily.objects.filter(revenue__gt=0).count()
    order_days = SalesDaily.objects.exclude(orders=0, cancelled=0).count()
    assert revenue_days == len(ORDERS) - 2  # two days' only orders were cancelled

    with admin_page(live_server.url, "boss", "pass-word-123", height=1000) as page:

        # the first page after login is the dashboard
        expect(page.locator("#dashboard")).to_be_visible()
        assert page.url.rstrip("/").endswith("/admin")
        expect(page.locator("#site-name")).to_contain_text("back office")
        revenue = page.locator("#dashboard-revenue svg rect.bar")
        expect(revenue).to_have_count(revenue_days)
        # kept orders and, stacked on their day, the cancelled ones
        expect(page.locator("#dashboard-orders svg rect.bar")).to_have_count(order_days)
        top = page.locator("#dashboard-top-products svg")
        for _sku, name, _price in PRODUCTS:
            expect(top).to_contain_text(name)
        expect(page.locator("#dashboard-top-products svg rect.bar")).to_have_count(4)
        expect(page.locator("#dashboard-status svg")).to_contain_text("cancelled")
        expect(page.locator("#dashboard-shipments svg")).to_contain_text("in transit")
        from projections.registry import PROJECTORS

        # one lag row per projection, whatever projections there are
        expect(page.locator("#dashboard-projections tr.projection-lag")).to_have_count(
            len(PROJECTORS))
        expect(page.locator("#dashboard-projections")).to_contain_text("Order history")
        # the charts are drawn: the tallest bar has a real height on screen
        box = revenue.first.bounding_box()
        assert box is not None and box["height"] > 0 and box["width"] > 2

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("DASHBOARD_SCREENSHOT"):
            page.screenshot(path=str(Path(os.environ["DASHBOARD_SCREENSHOT"])),
                            full_page=False)
