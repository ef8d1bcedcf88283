"""Product names show something and cannot reorder the text around them (issue:
invisible-only names (U+FEFF) and bidi overrides were accepted). The rule lives in
catalog/domain.py, so the API and the admin refuse the same names."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.domain import Product, check_name
from shop.errors import InvalidInput
from tests.admin.helpers import messages_of
from tests.givens import log_unchanged, register

pytestmark = pytest.mark.django_db

BAD_NAMES = [
    "\ufeff",  # zero-width no-break space only
    "\u200b\u200d",  # zero-width space and joiner
    "\u0301",  # a combining mark with nothing to mark
    "\u3000 \t",  # only spaces
    "Mug \u202eevil",  # right-to-left override
    "\u2066Mug\u2069",  # isolates
    "Mug\u200f",  # right-to-left mark
    "Mug\x07",  # a control character
]
GOOD_NAMES = ["Blue mug", "Tasse bleue \u00e0 caf\u00e9", "\u05e1\u05e4\u05dc", "\u2615", "\u00e9"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_domain_refuses_the_name(name):
    with pytest.raises(InvalidInput) as refused:
        Product.register(sku="MUG-1", name=name, price=Decimal("1.00"), stock=1)
    assert set(refused.value.errors) == {"name"}
    product = Product.register(sku="MUG-1", name="Mug", price=Decimal("1.00"), stock=1)
    with pytest.raises(InvalidInput):
        product.rename(name)
    assert product.name == "Mug"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_visible_names_in_any_script_are_fine(name):
    check_name(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_api_refuses_the_name(client_for, staff, event_store, name):
    mug = register("MUG-1", "Blue mug")
    client = client_for(staff)
    with log_unchanged():
        created = client.post("/api/commands/products/", {
            "sku": "PEN-1", "name": name, "price": "1.00", "stock": 1}, format="json")
        renamed = client.post(f"/api/commands/products/{mug}/rename", {"name": name},
                              format="json")
    for response in (created, renamed):
        assert response.status_code == 400, response.content
        assert "name" in response.json()["errors"]


def test_the_admin_refuses_the_name(client, staff, event_store):
    client.force_login(staff)
    with log_unchanged():
        response = client.post(reverse("admin:projections_productcatalog_register"), {
            "sku": "PEN-1", "name": "Pen \u202e", "price": "1.00", "stock": "1"})
    assert response.status_code == 200
    shown = " ".join(messages_of(response)) + str(response.context["form"].errors)
    assert "text-direction" in shown
