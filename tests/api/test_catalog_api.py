"""POST /api/commands/products/… over HTTP: staff register, rename, reprice, restock."""

from uuid import uuid4

import pytest

from catalog.domain import Product, product_id_for_sku
from shop.unit_of_work import load
from tests.api.helpers import assert_error, assert_saved
from tests.givens import log_unchanged, project

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/commands/products/"
VALID = {"sku": "MUG-1", "name": "Blue mug", "price": "19.99", "stock": 10}


def action(product_id, word: str) -> str:
    return f"/api/commands/products/{product_id}/{word}"


# --- register --------------------------------------------------------------------------


def test_staff_registers_a_product(event_store, staff, client_for):
    response = client_for(staff).post(PRODUCTS, VALID, format="json")

    body = assert_saved(response, 201, "product", version=1, position=1)
    assert body["product_id"] == str(product_id_for_sku("MUG-1"))
    product = load(product_id_for_sku("MUG-1"), Product)
    assert (product.sku, product.name, str(product.price), product.stock) == (
        "MUG-1", "Blue mug", "19.99", 10,
    )


def test_a_product_may_have_a_category_shown_in_the_catalog(event_store, staff, client_for):
    client = client_for(staff)
    response = client.post(PRODUCTS, {**VALID, "category": " Mugs "}, format="json")

    assert_saved(response, 201, "product", version=1)
    assert load(product_id_for_sku("MUG-1"), Product).category == "Mugs"
    project()
    listed = client.get("/api/queries/products/").json()["results"]
    assert [(p["sku"], p["category"]) for p in listed] == [("MUG-1", "Mugs")]
    # Optional: without one, the category is empty.
    client.post(PRODUCTS, {**VALID, "sku": "PEN-1"}, format="json")
    assert load(product_id_for_sku("PEN-1"), Product).category == ""


@pytest.mark.parametrize("value", ["x" * 101, None, ["Mugs"]])
def test_an_invalid_category_is_a_400(event_store, staff, client_for, value):
    with log_unchanged():
        response = client_for(staff).post(PRODUCTS, {**VALID, "category": value}, format="json")
    assert_error(response, 400, "invalid", {"category"})


def test_numbers_may_be_json_numbers(event_store, staff, client_for):
    response = client_for(staff).post(
        PRODUCTS, {"sku": "A_b-9", "name": "x", "price": 5, "stock": 0}, format="json"
    )
    assert_saved(response, 201, "product", version=1)
    assert str(load(product_id_for_sku("A_b-9"), Product).price) == "5.00"


@pytest.mark.parametrize("sku", ["MUG-1", "mug-1", "Mug-1"])
def test_duplicate_sku_is_a_conflict_whatever_the_case(event_store, staff, client_for, sku):
    client = client_for(staff)
    client.post(PRODUCTS, VALID, format="json")

    with log_unchanged():
        response = client.post(PRODUCTS, {**VALID, "sku": sku}, format="json")
    body = assert_error(response, 409, "duplicate_sku")
    assert sku in body["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sku", ""), ("sku", "has space"), ("sku", "MUG/1"), ("sku", "x" * 65),
        ("sku", "mugé"), ("sku", "MUG-1\n2"), ("sku", None),
        ("name", ""), ("name", "   "), ("name", "x" * 201), ("name", None), ("name", ["a"]),
        ("price", "0"), ("price", "0.00"), ("price", "-1"), ("price", "1.999"),
        ("price", "abc"), ("price", True), ("price", None), ("price", "NaN"),
        ("price", "Infinity"), ("price", "10000000000.00"),
        ("stock", -1), ("stock", "abc"), ("stock", True), ("stock", False), ("stock", 1.5),
        ("stock", None), ("stock", 10**12), ("stock", [1]),
    ],
)
def test_invalid_field_is_a_400(event_store, staff, client_for, field, value):
    with log_unchanged():
        response = client_for(staff).post(PRODUCTS, {**VALID, field: value}, format="json")
    assert_error(response, 400, "invalid", {field})


def test_missing_fields_are_each_reported(event_store, staff, client_for):
    with log_unchanged():
        response = client_for(staff).post(PRODUCTS, {}, format="json")
    body = assert_error(response, 400, "invalid", {"sku", "name", "price", "stock"})
    assert body["errors"]["sku"] == ["This field is required."]


def test_customer_may_not_register(event_store, customer, client_for):
    with log_unchanged():
        response = client_for(customer).post(PRODUCTS, VALID, format="json")
    assert_error(response, 403, "permission_denied")


def test_anonymous_may_not_register(event_store, client_for):
    with log_unchanged():
        response = client_for(None).post(PRODUCTS, VALID, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


# --- rename, reprice, restock -----------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "body", "check"),
    [
        ("rename", {"name": "Red mug"}, lambda p: p.name == "Red mug"),
        ("reprice", {"price": "24.50"}, lambda p: str(p.price) == "24.50"),
        ("restock", {"quantity": 5}, lambda p: p.stock == 15),
    ],
)
def test_staff_changes_a_product(event_store, staff, client_for, given_product, word, body,
                                 check):
    product_id = given_product()

    response = client_for(staff).post(action(product_id, word), body, format="json")

    saved = assert_saved(response, 200, "product", version=2, position=2)
    assert saved["product_id"] == str(product_id)
    assert check(load(product_id, Product))


@pytest.mark.parametrize(
    ("word", "body"),
    [
        ("rename", {"name": ""}), ("rename", {"name": "  "}), ("rename", {"name": "x" * 201}),
        ("rename", {}),
        ("reprice", {"price": "0"}), ("reprice", {"price": "1.001"}),
        ("reprice", {"price": "-3"}), ("reprice", {"price": False}), ("reprice", {}),
        ("restock", {"quantity": 0}), ("restock", {"quantity": -1}),
        ("restock", {"quantity": 1001}), ("restock", {"quantity": True}),
        ("restock", {"quantity": "many"}), ("restock", {"quantity": 2.5}), ("restock", {}),
    ],
)
def test_invalid_change_is_a_400(event_store, staff, client_for, given_product, word, body):
    product_id = given_product()
    with log_unchanged():
        response = client_for(staff).post(action(product_id, word), body, format="json")
    field = {"rename": "name", "reprice": "price", "restock": "quantity"}[word]
    assert_error(response, 400, "invalid", {field})


@pytest.mark.parametrize(
    ("word", "body"),
    [("rename", {"name": "x"}), ("reprice", {"price": "1.00"}), ("restock", {"quantity": 1})],
)
def test_unknown_product_in_path_is_a_404(event_store, staff, client_for, word, body):
    with log_unchanged():
        response = client_for(staff).post(action(uuid4(), word), body, format="json")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("word", ["rename", "reprice", "restock"])
def test_malformed_id_in_path_is_a_404(event_store, staff, client_for, word):
    response = client_for(staff).post(action("not-a-uuid", word), {}, format="json")
    assert_error(response, 404, "not_found")


def test_an_order_id_is_not_a_product(event_store, staff, customer, client_for, given_order):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(staff).post(action(order_id, "rename"), {"name": "x"},
                                          format="json")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("word", "body"),
    [("rename", {"name": "x"}), ("reprice", {"price": "1.00"}), ("restock", {"quantity": 1})],
)
def test_changes_are_staff_only(event_store, customer, client_for, given_product, word, body):
    product_id = given_product()
    with log_unchanged():
        assert_error(client_for(customer).post(action(product_id, word), body, format="json"),
                     403, "permission_denied")
        assert_error(client_for(None).post(action(product_id, word), body, format="json"),
                     401, "not_authenticated")
