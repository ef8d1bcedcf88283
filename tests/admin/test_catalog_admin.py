"""The product catalog in the admin: list, search, and the product commands through
forms that call the catalog services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.domain import product_id_for_sku
from projections.models import ProductCatalog
from shop.eventstore import get_app, head_position
from tests.admin.helpers import messages_of
from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:projections_productcatalog_changelist")
REGISTER = reverse("admin:projections_productcatalog_register")


def product_url(view: str, product_id) -> str:
    return reverse(f"admin:projections_productcatalog_{view}", args=[product_id])


def test_changelist_lists_and_searches_the_catalog(staff_client, given_product, caught_up):
    given_product("MUG-1", name="Blue mug", price="19.99", stock=10)
    given_product("TEE-9", name="Red shirt", price="5.00", stock=3)
    caught_up()

    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    body = response.content.decode()
    assert "MUG-1" in body and "TEE-9" in body and "19.99" in body
    assert REGISTER in body  # the "Register product" button

    response = staff_client.get(CHANGELIST, {"q": "shirt"})
    assert [p.sku for p in response.context["cl"].result_list] == ["TEE-9"]


def test_product_page_is_read_only_with_command_links(staff_client, given_product, caught_up):
    product_id = given_product()
    caught_up()

    response = staff_client.get(product_url("change", product_id))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    body = response.content.decode()
    for view in ("rename", "reprice", "restock"):
        assert product_url(view, product_id) in body


def test_register_product_appends_the_event(staff_client, event_store):
    response = staff_client.get(REGISTER)
    assert response.status_code == 200

    response = staff_client.post(
        REGISTER, {"sku": "LAMP-2", "name": "Desk lamp", "price": "24.50", "stock": "7"}
    )
    assert response.status_code == 302
    assert response.url == CHANGELIST
    product = get_app().repository.get(product_id_for_sku("LAMP-2"))
    assert (product.sku, product.name, product.price, product.stock) == (
        "LAMP-2", "Desk lamp", Decimal("24.50"), 7
    )
    [message] = messages_of(response)
    assert message == "Registered LAMP-2."  # what happened, not log positions


def test_register_duplicate_sku_shows_the_error_and_appends_nothing(staff_client, given_product):
    given_product("MUG-1")
    with log_unchanged():
        response = staff_client.post(
            REGISTER, {"sku": "mug-1", "name": "Other", "price": "1.00", "stock": "1"}
        )
    assert response.status_code == 200  # the form again, with the message
    assert any("already exists" in m for m in messages_of(response))
    assert "already exists" in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [("sku", "bad sku!"), ("sku", "x" * 65), ("price", "0"), ("price", "1.005"),
     ("stock", "-1"), ("name", "")],
)
def test_register_validates_like_the_api(staff_client, event_store, field, value):
    data = {"sku": "OK-1", "name": "Thing", "price": "1.00", "stock": "1", field: value}
    with log_unchanged():
        response = staff_client.post(REGISTER, data)
    assert response.status_code == 200
    assert field in response.context["form"].errors


def test_rename_reprice_restock_append_events(staff_client, given_product, caught_up):
    product_id = given_product(stock=10)
    caught_up()

    response = staff_client.get(product_url("rename", product_id))
    assert response.status_code == 200
    assert response.context["form"].initial == {"name": "Blue mug"}

    response = staff_client.post(product_url("rename", product_id), {"name": "Green mug"})
    assert response.status_code == 302 and response.url == product_url("change", product_id)
    response = staff_client.post(product_url("reprice", product_id), {"price": "21.00"})
    assert response.status_code == 302
    response = staff_client.post(product_url("restock", product_id), {"quantity": "5"})
    assert response.status_code == 302
    assert messages_of(response)[-3:] == [
        "Renamed MUG-1 to “Green mug”.", "Repriced MUG-1 from €19.99 to €21.00.",
        "Restocked MUG-1 with 5."]

    product = get_app().repository.get(product_id)
    assert (product.version, product.name, product.price, product.stock) == (
        4, "Green mug", Decimal("21.00"), 15
    )
    assert head_position() == 4

    caught_up()
    row = ProductCatalog.objects.get(product_id=product_id)
    assert (row.name, row.price, row.stock_available) == ("Green mug", Decimal("21.00"), 15)


def test_product_command_on_an_unknown_product_shows_a_message(staff_client, event_store):
    unknown = product_id_for_sku("NOPE")
    with log_unchanged():
        response = staff_client.post(product_url("restock", unknown), {"quantity": "1"})
    assert response.status_code == 200
    assert any("was not found" in m for m in messages_of(response))


@pytest.mark.parametrize(
    ("view", "data", "field"),
    [("rename", {"name": "  "}, "name"), ("reprice", {"price": "-1"}, "price"),
     ("restock", {"quantity": "0"}, "quantity"), ("restock", {"quantity": "1001"}, "quantity")],
)
def test_product_command_validation(staff_client, given_product, view, data, field):
    product_id = given_product()
    with log_unchanged():
        response = staff_client.post(product_url(view, product_id), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors


def test_a_form_shown_before_someone_else_changed_the_product_saves_nothing(
    staff_client, given_product, caught_up
):
    from catalog.services import product_reprice

    product_id = given_product(price="19.99")
    caught_up()
    form = staff_client.get(product_url("rename", product_id))
    shown = form.context["form"]["shown_version"].value()
    assert shown == 1
    assert 'name="shown_version"' in form.content.decode()
    product_reprice(product_id=product_id, price=Decimal("5.00"))  # a colleague, meanwhile

    with log_unchanged():
        stale = staff_client.post(product_url("rename", product_id),
                                  {"name": "Green mug", "shown_version": shown})
    assert stale.status_code == 200  # the form again, not a redirect
    [message] = messages_of(stale)
    assert message.startswith("Product MUG-1 changed since you read it")  # by its SKU
    assert "Nothing was saved" in message and str(product_id) not in message

    caught_up()
    fresh = staff_client.get(product_url("rename", product_id))
    current = staff_client.post(product_url("rename", product_id),
                                {"name": "Green mug",
                                 "shown_version": fresh.context["form"]["shown_version"].value()})
    assert current.status_code == 302
    assert get_app().repository.get(product_id).name == "Green mug"
