"""The admin in a real headless browser: a staff member logs in, opens an order from
the order history and sees its lines and its event timeline.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright``
Python package (in requirements.txt); Playwright drives the system browser, so
``playwright install`` (which downloads its own) is never run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.urls import reverse

from tests.support.browser import admin_page, needs_chromium

SCREENSHOT = Path(os.environ.get("ADMIN_SCREENSHOT", "/tmp/admin_order.png"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]


@pytest.fixture
def placed_and_shipped_order(event_store, customer):
    """An order for two products, shipped and dispatched, with the read models
    caught up (the commit-time trigger may be a broker the test does not run)."""
    from decimal import Decimal

    from catalog.services import product_register
    from orders.services import order_place
    from projections.registry import PROJECTORS, get_projector
    from projections.runner import catch_up
    from shipping.services import shipment_change_status, shipment_create

    mug = product_register(sku="MUG-1", name="Blue mug", price=Decimal("19.99"), stock=10)
    tee = product_register(sku="TEE-9", name="Red shirt", price=Decimal("5.00"), stock=5)
    saved, _total = order_place(
        customer_id=customer.id, customer=customer.username,
        lines=[(mug.aggregate_id, 3), (tee.aggregate_id, 1)],
        shipping_address="1 Main St, Springfield",
    )
    shipment = shipment_create(order_id=saved.aggregate_id, carrier="DHL")
    shipment_change_status(shipment_id=shipment.aggregate_id, status="dispatched")
    for name in PROJECTORS:
        catch_up(get_projector(name))
    return saved.aggregate_id


def test_staff_logs_in_and_sees_an_orders_timeline(live_server, make_user,
                                                   placed_and_shipped_order):
    from playwright.sync_api import expect

    make_user("boss", is_staff=True)
    from projections.models import OrderHistory

    order_number = OrderHistory.objects.get(pk=placed_and_shipped_order).number
    changelist = reverse("admin:projections_orderhistory_changelist")

    with admin_page(live_server.url, "boss", "pass-word-123", height=1100,
                    next_path=changelist) as page:
        # the order history list, then the order's page
        expect(page.locator("#result_list")).to_contain_text("john")
        page.click(f"#result_list th a:text-is('{order_number}')")
        expect(page.locator("#order-timeline")).to_be_visible()

        lines = page.locator("#order-lines")
        expect(lines).to_contain_text("Blue mug")
        expect(lines).to_contain_text("Red shirt")
        expect(lines).to_contain_text("€64.97")
        events = page.locator("#order-timeline tr.timeline-event")
        expect(events).to_have_count(4)
        expect(events.nth(0)).to_contain_text("Order placed for €64.97")
        timeline = page.locator("#order-timeline").inner_text()
        for sentence in ("Shipment created (DHL)", "Order shipped", "Shipment dispatched (DHL)"):
            assert sentence in timeline
        assert "Shipment.Dispatched" not in timeline
        expect(page.locator("#shipment-status-form")).to_be_visible()
        page.screenshot(path=str(SCREENSHOT), full_page=True)
