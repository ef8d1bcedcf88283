"""Only staff get into the shop's admin: a customer (or anyone logged out) is sent to
the admin login for every page and every command, and nothing is appended."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_urls(given_product, given_order, caught_up):
    product_id = given_product("MUG-1")
    order_id = given_order([(product_id, 1)])
    caught_up()
    product = "admin:projections_productcatalog_"
    order = "admin:projections_orderhistory_"
    return {
        "GET": [
            reverse("admin:index"),
            reverse(f"{product}changelist"),
            reverse(f"{product}change", args=[product_id]),
            reverse(f"{order}changelist"),
            reverse(f"{order}change", args=[order_id]),
            reverse("admin:projections_checkpoint_changelist"),
        ],
        "POST": [
            (reverse(f"{product}register"),
             {"sku": "X-1", "name": "X", "price": "1.00", "stock": "1"}),
            (reverse(f"{product}rename", args=[product_id]), {"name": "X"}),
            (reverse(f"{product}reprice", args=[product_id]), {"price": "1.00"}),
            (reverse(f"{product}restock", args=[product_id]), {"quantity": "1"}),
            (reverse(f"{order}cancel", args=[order_id]), {"reason": ""}),
            (reverse(f"{order}shipment_create", args=[order_id]), {"carrier": "DHL"}),
            (reverse(f"{order}shipment_status", args=[order_id]), {"status": "dispatched"}),
            (reverse(f"{order}changelist"),
             {"action": "cancel_orders", "_selected_action": [str(order_id)]}),
            (reverse("admin:projections_checkpoint_changelist"),
             {"action": "rebuild", "projection": ["product_catalog"]}),
        ],
    }


def assert_sent_to_login(response, url: str) -> None:
    assert response.status_code == 302, url
    assert response.url.startswith(reverse("admin:login")), url


@pytest.mark.parametrize("who", ["customer", "anonymous"])
def test_non_staff_are_refused_everywhere(client, customer, admin_urls, who):
    if who == "customer":
        client.force_login(customer)
    for url in admin_urls["GET"]:
        assert_sent_to_login(client.get(url), url)
    with log_unchanged():
        for url, data in admin_urls["POST"]:
            assert_sent_to_login(client.post(url, data), url)


def test_staff_sees_every_page(staff_client, admin_urls):
    for url in admin_urls["GET"]:
        assert staff_client.get(url).status_code == 200, url
    index = staff_client.get(reverse("admin:index")).content.decode()
    for model in ("productcatalog", "orderhistory", "checkpoint"):
        assert f"/admin/projections/{model}/" in index
    assert "/add/" not in index  # read models: no add links
