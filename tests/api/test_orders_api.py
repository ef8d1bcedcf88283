"""POST /api/commands/orders/… over HTTP: place (any customer) and cancel (owner or staff)."""

from unittest.mock import ANY
from uuid import UUID, uuid4

import pytest

from catalog.domain import Product
from orders.domain import Order
from shop.unit_of_work import load
from tests.api.helpers import assert_error, assert_saved
from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db

ORDERS = "/api/commands/orders/"


def cancel_url(order_id) -> str:
    return f"/api/commands/orders/{order_id}/cancel"


def order_body(*lines, address: str = "1 Main St, Springfield") -> dict:
    return {
        "lines": [{"product_id": str(pid), "quantity": qty} for pid, qty in lines],
        "shipping_address": address,
    }


# --- place -----------------------------------------------------------------------------


def test_customer_places_an_order(event_store, customer, client_for, given_product):
    mug = given_product(price="19.99", stock=10)

    response = client_for(customer).post(ORDERS, order_body((mug, 3)), format="json")

    # Registered (1), then Placed + StockReserved in one save: the last is 3, and the
    # order's number is its Placed's position.
    body = assert_saved(response, 201, "order", version=1, position=3, total="59.97",
                        number=2)
    order = load(UUID(body["order_id"]), Order)
    assert (order.customer_id, order.customer, order.status) == (customer.id, "john", "placed")
    assert order.lines == [{"product_id": mug, "sku": "MUG-1", "quantity": 3,
                            "unit_price": order.lines[0]["unit_price"]}]
    assert str(order.lines[0]["unit_price"]) == "19.99"
    product = load(mug, Product)
    assert (product.stock, product.reserved, product.available) == (10, 3, 7)


def test_order_with_several_lines_totals_them(event_store, customer, client_for,
                                              given_product):
    mug = given_product("MUG-1", price="19.99")
    plate = given_product("PLATE-1", price="5.05")

    response = client_for(customer).post(ORDERS, order_body((mug, 1), (plate, 4)),
                                         format="json")

    assert_saved(response, 201, "order", version=1, position=5, total="40.19", number=3)


def test_total_is_a_string_with_two_places(event_store, customer, client_for, given_product):
    mug = given_product(price="5")
    response = client_for(customer).post(ORDERS, order_body((mug, 2)), format="json")
    assert response.json()["total"] == "10.00"


def test_staff_may_place_an_order_too(event_store, staff, client_for, given_product):
    response = client_for(staff).post(ORDERS, order_body((given_product(), 1)), format="json")
    assert_saved(response, 201, "order", version=1, total="19.99", number=ANY)


def test_the_price_is_taken_from_the_catalog_now(event_store, staff, customer, client_for,
                                                 given_product):
    mug = given_product(price="19.99")
    client_for(staff).post(f"/api/commands/products/{mug}/reprice", {"price": "9.99"},
                           format="json")
    response = client_for(customer).post(ORDERS, order_body((mug, 2)), format="json")
    assert response.json()["total"] == "19.98"


def test_insufficient_stock_is_a_conflict_and_saves_nothing(event_store, customer, client_for,
                                                            given_product):
    plenty = given_product("MUG-1", stock=10)
    scarce = given_product("PLATE-1", stock=2)

    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body((plenty, 5), (scarce, 3)),
                                             format="json")

    body = assert_error(response, 409, "insufficient_stock")
    assert "PLATE-1" in body["detail"]
    # The line that had stock was not reserved either: one atomic save or none.
    assert load(plenty, Product).available == 10
    assert load(scarce, Product).available == 2


def test_stock_never_goes_below_zero(event_store, customer, client_for, given_product):
    mug = given_product(stock=3)
    client = client_for(customer)
    assert client.post(ORDERS, order_body((mug, 3)), format="json").status_code == 201
    with log_unchanged():
        assert_error(client.post(ORDERS, order_body((mug, 1)), format="json"),
                     409, "insufficient_stock")
    assert load(mug, Product).available == 0


def test_unknown_product_in_lines_is_a_400_field_error(event_store, customer, client_for,
                                                       given_product):
    mug = given_product()
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body((mug, 1), (uuid4(), 1)),
                                             format="json")
    body = assert_error(response, 400, "invalid", {"lines"})
    assert "Unknown product" in body["errors"]["lines"][0]


def test_an_order_id_in_lines_is_not_a_product(event_store, customer, client_for, given_order):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body((order_id, 1)), format="json")
    assert_error(response, 400, "invalid", {"lines"})


def test_a_product_twice_is_a_400_on_lines(event_store, customer, client_for, given_product):
    mug = given_product()
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body((mug, 1), (mug, 2)),
                                             format="json")
    assert_error(response, 400, "invalid", {"lines"})


def test_lines_must_not_be_empty(event_store, customer, client_for):
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body(), format="json")
    assert_error(response, 400, "invalid", {"lines"})


def test_at_most_100_lines(event_store, customer, client_for):
    lines = [(uuid4(), 1) for _ in range(101)]
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body(*lines), format="json")
    assert_error(response, 400, "invalid", {"lines"})


@pytest.mark.parametrize("quantity", [0, -1, 1001, True, False, "many", 1.5, None, [1]])
def test_quantity_is_an_integer_from_1_to_1000(event_store, customer, client_for,
                                               given_product, quantity):
    mug = given_product()
    body = order_body((mug, 1))
    body["lines"][0]["quantity"] = quantity
    with log_unchanged():
        response = client_for(customer).post(ORDERS, body, format="json")
    assert_error(response, 400, "invalid", {"lines.0.quantity"})


def test_quantity_1000_is_allowed(event_store, customer, client_for, given_product):
    mug = given_product(stock=1000)
    response = client_for(customer).post(ORDERS, order_body((mug, 1000)), format="json")
    assert response.status_code == 201


@pytest.mark.parametrize("product_id", ["not-a-uuid", 42, True, None, ""])
def test_product_id_must_be_a_uuid_string(event_store, customer, client_for, product_id):
    body = {"lines": [{"product_id": product_id, "quantity": 1}], "shipping_address": "x"}
    with log_unchanged():
        response = client_for(customer).post(ORDERS, body, format="json")
    assert_error(response, 400, "invalid", {"lines.0.product_id"})


def test_errors_name_the_line_they_belong_to(event_store, customer, client_for,
                                             given_product):
    mug, plate = given_product("MUG-1"), given_product("PLATE-1")
    body = {"lines": [{"product_id": str(mug), "quantity": 1},
                      {"product_id": str(plate)}],
            "shipping_address": "x"}
    response = client_for(customer).post(ORDERS, body, format="json")
    assert_error(response, 400, "invalid", {"lines.1.quantity"})


@pytest.mark.parametrize("lines", [None, "MUG-1", {"product_id": "x"}, ["x"], 3])
def test_lines_must_be_a_list_of_objects(event_store, customer, client_for, lines):
    with log_unchanged():
        response = client_for(customer).post(
            ORDERS, {"lines": lines, "shipping_address": "x"}, format="json"
        )
    body = assert_error(response, 400, "invalid")
    assert all(key.startswith("lines") for key in body["errors"])


@pytest.mark.parametrize("address", ["", "   ", "x" * 501, None])
def test_shipping_address_is_required_and_bounded(event_store, customer, client_for,
                                                  given_product, address):
    mug = given_product()
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body((mug, 1), address=address),
                                             format="json")
    assert_error(response, 400, "invalid", {"shipping_address"})


def test_missing_fields(event_store, customer, client_for):
    response = client_for(customer).post(ORDERS, {}, format="json")
    assert_error(response, 400, "invalid", {"lines", "shipping_address"})


def test_anonymous_may_not_place_an_order(event_store, client_for, given_product):
    mug = given_product()
    with log_unchanged():
        response = client_for(None).post(ORDERS, order_body((mug, 1)), format="json")
    assert_error(response, 401, "not_authenticated")


# --- cancel ----------------------------------------------------------------------------


def test_owner_cancels_and_the_stock_is_released(event_store, customer, client_for,
                                                 given_product):
    mug = given_product(stock=5)
    client = client_for(customer)
    order_id = client.post(ORDERS, order_body((mug, 2)), format="json").json()["order_id"]
    assert load(mug, Product).available == 3

    response = client.post(cancel_url(order_id), {"reason": "changed my mind"}, format="json")

    # Cancelled + StockReleased after the 3 events so far.
    assert_saved(response, 200, "order", version=2, position=5)
    assert response.json()["order_id"] == order_id
    order = load(UUID(order_id), Order)
    assert (order.status, order.cancel_reason) == ("cancelled", "changed my mind")
    assert load(mug, Product).available == 5


def test_cancel_needs_no_body(event_store, customer, client_for, given_order):
    order_id = given_order(customer)
    response = client_for(customer).post(cancel_url(order_id))
    assert_saved(response, 200, "order", version=2)


def test_staff_may_cancel_anyones_order(event_store, staff, customer, client_for,
                                        given_order):
    order_id = given_order(customer)
    response = client_for(staff).post(cancel_url(order_id), {}, format="json")
    assert_saved(response, 200, "order", version=2)


def test_another_customers_order_is_not_found(event_store, customer, other_customer,
                                              client_for, given_order):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(other_customer).post(cancel_url(order_id), {}, format="json")
    assert_error(response, 404, "not_found")
    assert load(order_id, Order).status == "placed"


def test_cancelling_twice_is_invalid_state(event_store, customer, client_for, given_order):
    order_id = given_order(customer)
    client = client_for(customer)
    assert client.post(cancel_url(order_id), {}, format="json").status_code == 200
    with log_unchanged():
        response = client.post(cancel_url(order_id), {}, format="json")
    body = assert_error(response, 409, "invalid_state")
    assert "cancelled" in body["detail"]


def test_a_shipped_order_cannot_be_cancelled(event_store, staff, customer, client_for,
                                             given_order):
    order_id = given_order(customer)
    client_for(staff).post("/api/commands/shipments/",
                           {"order_id": str(order_id), "carrier": "DHL"}, format="json")
    with log_unchanged():
        response = client_for(customer).post(cancel_url(order_id), {}, format="json")
    assert_error(response, 409, "invalid_state")


def test_unknown_order_is_a_404(event_store, customer, client_for):
    with log_unchanged():
        response = client_for(customer).post(cancel_url(uuid4()), {}, format="json")
    assert_error(response, 404, "not_found")


def test_a_product_id_is_not_an_order(event_store, staff, client_for, given_product):
    mug = given_product()
    with log_unchanged():
        response = client_for(staff).post(cancel_url(mug), {}, format="json")
    assert_error(response, 404, "not_found")


def test_malformed_order_id_is_a_404(event_store, customer, client_for):
    response = client_for(customer).post("/api/commands/orders/123/cancel", {}, format="json")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("reason", ["x" * 501, ["a"], {"a": 1}])
def test_reason_is_bounded(event_store, customer, client_for, given_order, reason):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(customer).post(cancel_url(order_id), {"reason": reason},
                                             format="json")
    assert_error(response, 400, "invalid", {"reason"})


def test_anonymous_may_not_cancel(event_store, customer, client_for, given_order):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(None).post(cancel_url(order_id), {}, format="json")
    assert_error(response, 401, "not_authenticated")
