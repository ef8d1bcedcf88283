"""A shop manager's day in the back office, in a real headless browser, checking what
the pages SAY: the dashboard, an order found by its number, its timeline read as
sentences, its shipment advanced, a product repriced, and a stale form refused by the
product's SKU. Then the dashboard and an order page on a 390 px phone: nothing wider
than the screen.

The screenshots go to the test's temporary directory and, when ``DOCS_SCREENSHOTS``
names a folder, the order page there too as ``order-page.png`` (that is how
``docs/order-page.png`` is made: ``DOCS_SCREENSHOTS=docs pytest
tests/e2e/test_manager_day_browser.py``; ``docs/dashboard.png`` comes from
``tests/e2e/test_dashboard_browser.py`` with ``DASHBOARD_SCREENSHOT``).
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from tests.support.browser import admin_page, needs_chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]

PHONE = 390


def caught_up() -> None:
    from projections.registry import PROJECTORS, get_projector
    from projections.runner import catch_up

    for name in PROJECTORS:
        catch_up(get_projector(name))


@pytest.fixture
def a_day_of_orders(event_store, make_user):
    """Three products and three orders, one of them shipped and dispatched (DHL)."""
    from catalog.services import product_register
    from orders.services import order_place
    from shipping.services import shipment_change_status, shipment_create

    john, jane = make_user("john"), make_user("jane")
    mug = product_register(sku="MUG-1", name="Blue mug", price=Decimal("19.99"), stock=50)
    tee = product_register(sku="TEE-9", name="Red shirt", price=Decimal("5.00"), stock=50)
    bag = product_register(sku="BAG-1", name="Canvas tote bag", price=Decimal("9.90"),
                           stock=50)
    placed = []
    for user, lines in ((john, [(mug, 3), (tee, 1)]), (jane, [(bag, 2)]),
                        (john, [(tee, 4)])):
        saved, _total = order_place(
            customer_id=user.pk, customer=user.username,
            lines=[(product.aggregate_id, qty) for product, qty in lines],
            shipping_address=f"{len(placed) + 1} Harbour Road, Bristol",
        )
        placed.append(saved.aggregate_id)
    shipment = shipment_create(order_id=placed[0], carrier="DHL")
    shipment_change_status(shipment_id=shipment.aggregate_id, status="dispatched")
    caught_up()
    return {"order_id": placed[0], "mug": mug.aggregate_id}


def save_for_docs(page, name: str, tmp_path: Path) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("DOCS_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["DOCS_SCREENSHOTS"]) / name), full_page=True)


def messages(page) -> str:
    return page.locator("ul.messagelist").inner_text()


def test_a_managers_day(live_server, make_user, a_day_of_orders, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    # Playwright's sync API runs an event loop in this thread; the test's own database
    # calls between pages (catching up, someone else's reprice) are sequential, so
    # Django's guard against ORM calls from async code does not apply.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    from catalog.services import product_reprice
    from projections.models import OrderHistory

    make_user("boss", is_staff=True)
    number = OrderHistory.objects.get(pk=a_day_of_orders["order_id"]).number

    with admin_page(live_server.url, "boss", "pass-word-123", height=1000) as page:
        # The dashboard: sales in the shop's currency, projections by their names, and
        # the shop's own section first.
        kpis = page.locator("#dashboard-sales .kpi strong")
        expect(kpis.nth(0)).to_have_text("€104.77")  # 64.97 + 19.80 + 20.00
        expect(kpis.nth(1)).to_have_text("3")
        expect(page.locator("#dashboard-projections")).to_contain_text("Order history")
        sections = page.locator("#content-main > .module caption")
        expect(sections.first).to_have_text("Shop")
        shop = page.locator(".app-section-shop").first
        for name in ("Orders", "Products", "Sales", "Activity"):
            expect(shop).to_contain_text(name)

        # Find an order by its number.
        shop.get_by_role("link", name="Orders", exact=True).click()
        page.fill("#searchbar", str(number))
        page.press("#searchbar", "Enter")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        page.click(f"#result_list th a:text-is('{number}')")

        # The order page leads with what staff ask first; ids wait under a fold.
        fields = page.locator("fieldset.module").first
        expect(fields).to_contain_text(str(number))
        expect(fields).to_contain_text("john")
        expect(fields).to_contain_text("shipped")
        expect(fields).to_contain_text("€64.97")
        expect(fields).to_contain_text("1 Harbour Road, Bristol")
        # Every header bar ("Shipment", "Lines", ...) is one line high.
        bars = page.locator("#content fieldset > h2, #content .order-section > h2")
        heights = {bars.nth(i).inner_text(): bars.nth(i).bounding_box()["height"]
                   for i in range(bars.count())}
        assert {"Shipment", "Lines", "Event timeline"} <= set(heights)
        assert max(heights.values()) < 1.5 * min(heights.values()), heights
        save_for_docs(page, "order-page.png", tmp_path)

        technical = page.locator("fieldset", has_text="Technical details")
        expect(technical.locator(".field-order_id")).not_to_be_visible()
        technical.locator("summary").click()
        expect(technical.locator(".field-order_id")).to_contain_text(
            str(a_day_of_orders["order_id"]))

        # Its timeline, read as sentences, each with its own aggregate's version.
        timeline = page.locator("#order-timeline")
        rows = timeline.locator("tr.timeline-event")
        expect(rows).to_have_count(4)
        expect(rows.nth(0).locator(".what")).to_have_text("Order placed for €64.97")
        expect(rows.nth(0).locator(".version")).to_have_text("order v1")
        expect(rows.nth(3).locator(".what")).to_have_text("Shipment dispatched (DHL)")
        expect(rows.nth(3).locator(".version")).to_have_text("shipment v2")
        assert "Shipment.Dispatched" not in timeline.inner_text()

        # Advance its shipment.
        form = page.locator("#shipment-status-form")
        expect(form.locator("select")).to_have_value("in_transit")
        form.get_by_role("button", name="Change status").click()
        expect(page.locator("ul.messagelist")).to_contain_text(
            f"The shipment of order {number} is now in transit.")
        assert "version" not in messages(page) and "position" not in messages(page)
        caught_up()
        page.reload()
        expect(page.locator("#order-timeline tr.timeline-event").nth(4).locator(".what")
               ).to_have_text("Shipment in transit (DHL)")

        # Reprice a product.
        page.goto(live_server.url + reverse("admin:projections_productcatalog_changelist"))
        expect(page.locator("#result_list")).to_contain_text("€19.99")
        page.click("#result_list a:text-is('MUG-1')")
        page.get_by_role("link", name="Reprice").click()
        page.fill("#id_price", "21.00")
        page.get_by_role("button", name="Reprice").click()
        expect(page.locator("ul.messagelist")).to_have_text(
            "Repriced MUG-1 from €19.99 to €21.00.")
        caught_up()

        # A form left open while someone else reprices: nothing is saved, and the page
        # names the product by its SKU.
        page.get_by_role("link", name="Reprice").click()
        product_reprice(product_id=a_day_of_orders["mug"], price=Decimal("22.00"))
        page.fill("#id_price", "23.00")
        page.get_by_role("button", name="Reprice").click()
        refusal = page.locator("ul.messagelist .error")
        expect(refusal).to_contain_text("Product MUG-1 changed since you read it")
        expect(refusal).to_contain_text("Nothing was saved")
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", refusal.inner_text())  # no UUID


@pytest.mark.parametrize("where", ["dashboard", "order"])
def test_a_phone_sees_no_horizontal_overflow(live_server, make_user, a_day_of_orders,
                                             tmp_path, where):
    from playwright.sync_api import expect

    make_user("boss", is_staff=True)
    order = reverse("admin:projections_orderhistory_change",
                    args=[a_day_of_orders["order_id"]])
    with admin_page(live_server.url, "boss", "pass-word-123", height=844, width=PHONE,
                    next_path=None if where == "dashboard" else order) as page:
        expect(page.locator("#dashboard" if where == "dashboard" else "#order-timeline")
               ).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(tmp_path / f"{where}-{PHONE}.png"), full_page=True)
        assert width <= PHONE, f"the {where} page is {width} px wide on a {PHONE} px screen"
        if where == "dashboard":
            # one column: every panel starts at the same left edge
            lefts = {round(box["x"]) for box in (
                panel.bounding_box() for panel in page.locator(".dashboard-panels > .module")
                .all())}
            assert len(lefts) == 1, lefts
