"""The back office as staff read it: the shop's name, the dashboard first, short order
rows with numbers, natural labels, each command once, readable timelines."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projections.models import OrderHistory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:projections_orderhistory_changelist")


@pytest.fixture
def shipped_order(given_product, given_order, given_shipment, caught_up):
    from shipping.services import shipment_change_status

    mug = given_product("MUG-1", name="Blue mug", price="19.99", stock=50)
    order_id = given_order([(mug, 2)])
    shipment_change_status(shipment_id=given_shipment(order_id), status="in_transit")
    caught_up()
    return OrderHistory.objects.get(pk=order_id)


def test_the_index_is_a_dashboard_under_the_shops_name(staff_client, shipped_order, settings):
    page = staff_client.get(reverse("admin:index")).content.decode()

    assert f"{settings.SHOP_NAME} back office" in page
    assert "Django administration" not in page
    for panel in ("dashboard-revenue", "dashboard-orders", "dashboard-top-products",
                  "dashboard-status", "dashboard-shipments", "dashboard-projections"):
        assert f'id="{panel}"' in page
    assert page.count("<svg") >= 5
    # the projections' page has one name everywhere
    assert "Projection status" in page and "Checkpoints" not in page


def test_order_rows_are_short_with_numbers_and_natural_labels(staff_client, shipped_order):
    response = staff_client.get(CHANGELIST)
    page = response.content.decode()

    assert response.context["title"] == "Orders"
    assert "Select order" not in page and "order history to view" not in page
    headers = [h.lower() for h in response.context["cl"].list_display]
    assert headers[1:] == ["order_number", "customer", "status_label", "total_label", "placed",
                           "shipment"]
    assert f">{shipped_order.number}</a>" in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert "in transit · DHL" in rows and "in_transit" not in rows
    assert "1 order" in page


def test_the_order_page_shows_each_command_once_and_a_readable_timeline(
    staff_client, shipped_order
):
    page = staff_client.get(
        reverse("admin:projections_orderhistory_change", args=[shipped_order.order_id])
    ).content.decode()

    assert page.count("Change status") == 1  # the form, not also an object tool
    breadcrumbs = page.split('class="breadcrumbs"')[1].split("</div>")[0]
    assert ">Shop</a>" in breadcrumbs and "Read models" not in breadcrumbs
    assert 'class="object-tools"' not in page
    assert "closelink" not in page and ">Close<" not in page
    timeline = page.split('id="order-timeline"')[1]
    assert "2 × MUG-1 at €19.99" in timeline  # money in SHOP_CURRENCY
    assert '{"' not in timeline  # no raw JSON
    assert ".000000" not in timeline  # no microseconds
    assert 'datetime="' in timeline
    assert "Shipment in transit" in page
    # sentences, not event class names; each aggregate its own version
    for sentence in ("Order placed for €39.98", "Shipment created (DHL)", "Order shipped",
                     "Shipment in transit (DHL)"):
        assert f'<td class="what">{sentence}</td>' in timeline
    assert "Shipment.WentInTransit" not in timeline.split("data-event-type")[0]
    assert '<td class="version">order v2</td>' in timeline
    assert '<td class="version">shipment v2</td>' in timeline
    assert "customer id" not in timeline


def test_the_product_pages_read_naturally(staff_client, given_product, caught_up):
    given_product("MUG-1", name="Blue mug")
    caught_up()
    changelist = staff_client.get(reverse("admin:projections_productcatalog_changelist"))
    page = changelist.content.decode()
    assert changelist.context["title"] == "Products"
    assert "product catalog to view" not in page and "1 product catalog" not in page
    assert "1 product" in page

    product = changelist.context["cl"].result_list[0]
    page = staff_client.get(
        reverse("admin:projections_productcatalog_change", args=[product.pk])
    ).content.decode()
    assert "View product" in page and "SKU:" in page and "Sku:" not in page
    assert ">Close<" not in page


def test_daily_sales_are_listed_read_only(staff_client, shipped_order):
    response = staff_client.get(reverse("admin:projections_salesdaily_changelist"))
    assert response.status_code == 200
    [day] = response.context["cl"].result_list
    assert (day.orders, day.units, str(day.revenue)) == (1, 2, "39.98")
    assert staff_client.get(reverse("admin:projections_salesdaily_add")).status_code == 403


def test_the_index_leads_with_the_shop_and_names_the_libraries_security(client, db):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root", password="pass-word-123"))
    index = client.get(reverse("admin:index"))
    sections = [(app["name"], [m["name"] for m in app["models"]])
                for app in index.context["app_list"]]

    assert sections[0] == ("Shop", ["Orders", "Products", "Sales", "Activity"])
    names = [name for name, _models in sections]
    assert names[:4] == ["Shop", "Accounts", "Read models", "Security"]
    assert "API tokens" in dict(sections)["Security"]
    assert "Access attempts" in dict(sections)["Security"]
    assert not {"Axes", "Knox", "Django Axes"} & set(names)  # no library sections
    assert ">order_history<" not in index.content.decode()


def test_projections_have_human_names(staff_client, shipped_order):
    status = staff_client.get(reverse("admin:projections_checkpoint_changelist")).content
    dashboard = staff_client.get(reverse("admin:index")).content
    for page in (status.decode(), dashboard.decode()):
        assert "Order history" in page and "Product catalog" in page
        assert ">order_history<" not in page


def test_money_is_written_in_the_shops_currency_as_the_locale_writes_it(
    staff_client, shipped_order, settings
):
    order_page = reverse("admin:projections_orderhistory_change", args=[shipped_order.order_id])
    assert "€39.98" in staff_client.get(order_page).content.decode()  # default: EUR, en-us

    settings.SHOP_CURRENCY = "GBP"
    page = staff_client.get(order_page).content.decode()
    assert "£39.98" in page and "2 × MUG-1 at £19.99" in page and "€" not in page
    dashboard = staff_client.get(reverse("admin:index")).content.decode()
    assert "£39.98" in dashboard
    products = staff_client.get(reverse("admin:projections_productcatalog_changelist"))
    assert "£19.99" in products.content.decode()
