"""POST /api/commands/shipments/… over HTTP (staff): create, then move forward."""

from uuid import UUID, uuid4

import pytest

from orders.domain import Order
from shipping.domain import Shipment
from shop.unit_of_work import load
from tests.api.helpers import assert_error, assert_saved
from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db

SHIPMENTS = "/api/commands/shipments/"


def status_url(shipment_id) -> str:
    return f"/api/commands/shipments/{shipment_id}/status"


@pytest.fixture
def given_shipment(staff, customer, client_for, given_order):
    def make(status: str | None = None) -> UUID:
        order_id = given_order(customer)
        client = client_for(staff)
        response = client.post(SHIPMENTS, {"order_id": str(order_id), "carrier": "DHL"},
                               format="json")
        shipment_id = UUID(response.json()["shipment_id"])
        if status:
            assert client.post(status_url(shipment_id), {"status": status},
                               format="json").status_code == 200
        return shipment_id

    return make


# --- create ----------------------------------------------------------------------------


def test_staff_creates_a_shipment_and_the_order_is_shipped(event_store, staff, customer,
                                                           client_for, given_order):
    order_id = given_order(customer)  # events 1-3

    response = client_for(staff).post(SHIPMENTS, {"order_id": str(order_id), "carrier": "DHL"},
                                      format="json")

    body = assert_saved(response, 201, "shipment", version=1, position=5)
    shipment = load(UUID(body["shipment_id"]), Shipment)
    assert (shipment.order_id, shipment.carrier, shipment.status) == (order_id, "DHL", "created")
    order = load(order_id, Order)
    assert (order.status, order.shipment_id) == ("shipped", shipment.id)


def test_a_cancelled_order_cannot_be_shipped(event_store, staff, customer, client_for,
                                            given_order):
    order_id = given_order(customer)
    client_for(customer).post(f"/api/commands/orders/{order_id}/cancel", {}, format="json")
    with log_unchanged():
        response = client_for(staff).post(
            SHIPMENTS, {"order_id": str(order_id), "carrier": "DHL"}, format="json"
        )
    assert_error(response, 409, "invalid_state")


def test_an_order_ships_once(event_store, staff, customer, client_for, given_order):
    order_id = given_order(customer)
    client = client_for(staff)
    body = {"order_id": str(order_id), "carrier": "DHL"}
    assert client.post(SHIPMENTS, body, format="json").status_code == 201
    with log_unchanged():
        assert_error(client.post(SHIPMENTS, body, format="json"), 409, "invalid_state")


def test_unknown_order_in_body_is_a_400_field_error(event_store, staff, client_for):
    with log_unchanged():
        response = client_for(staff).post(SHIPMENTS, {"order_id": str(uuid4()), "carrier": "DHL"},
                                          format="json")
    assert_error(response, 400, "invalid", {"order_id"})


def test_a_product_id_is_not_an_order(event_store, staff, client_for, given_product):
    mug = given_product()
    with log_unchanged():
        response = client_for(staff).post(SHIPMENTS, {"order_id": str(mug), "carrier": "DHL"},
                                          format="json")
    assert_error(response, 400, "invalid", {"order_id"})


@pytest.mark.parametrize(
    ("field", "value"),
    [("order_id", "nope"), ("order_id", 7), ("order_id", None), ("order_id", True),
     ("carrier", ""), ("carrier", "  "), ("carrier", "x" * 101), ("carrier", None)],
)
def test_invalid_fields(event_store, staff, customer, client_for, given_order, field, value):
    body = {"order_id": str(given_order(customer)), "carrier": "DHL", field: value}
    with log_unchanged():
        response = client_for(staff).post(SHIPMENTS, body, format="json")
    assert_error(response, 400, "invalid", {field})


def test_missing_fields(event_store, staff, client_for):
    assert_error(client_for(staff).post(SHIPMENTS, {}, format="json"), 400, "invalid",
                 {"order_id", "carrier"})


def test_customers_may_not_create_shipments(event_store, customer, client_for, given_order):
    order_id = given_order(customer)
    body = {"order_id": str(order_id), "carrier": "DHL"}
    with log_unchanged():
        assert_error(client_for(customer).post(SHIPMENTS, body, format="json"),
                     403, "permission_denied")
        assert_error(client_for(None).post(SHIPMENTS, body, format="json"),
                     401, "not_authenticated")


# --- status ----------------------------------------------------------------------------


def test_staff_moves_a_shipment_forward(event_store, staff, client_for, given_shipment):
    shipment_id = given_shipment()
    client = client_for(staff)

    for version, status in enumerate(["dispatched", "in_transit"], start=2):
        response = client.post(status_url(shipment_id), {"status": status}, format="json")
        body = assert_saved(response, 200, "shipment", version=version)
        assert body["shipment_id"] == str(shipment_id)
        assert load(shipment_id, Shipment).status == status


def test_skipping_a_step_is_allowed(event_store, staff, client_for, given_shipment):
    shipment_id = given_shipment()
    response = client_for(staff).post(status_url(shipment_id), {"status": "in_transit"},
                                      format="json")
    assert_saved(response, 200, "shipment", version=2)


def test_delivering_the_shipment_delivers_the_order(event_store, staff, client_for,
                                                    given_shipment):
    shipment_id = given_shipment("in_transit")

    response = client_for(staff).post(status_url(shipment_id), {"status": "delivered"},
                                      format="json")

    assert_saved(response, 200, "shipment", version=3)  # created, in_transit, delivered
    order = load(load(shipment_id, Shipment).order_id, Order)
    assert order.status == "delivered"


@pytest.mark.parametrize(
    ("current", "target"),
    [("dispatched", "created"), ("dispatched", "dispatched"), ("in_transit", "dispatched"),
     (None, "created"), ("delivered", "in_transit"), ("delivered", "delivered")],
)
def test_backward_or_same_move_is_an_invalid_transition(event_store, staff, client_for,
                                                        given_shipment, current, target):
    shipment_id = given_shipment(current)
    with log_unchanged():
        response = client_for(staff).post(status_url(shipment_id), {"status": target},
                                          format="json")
    body = assert_error(response, 409, "invalid_transition")
    assert target in body["detail"]


@pytest.mark.parametrize("status", ["lost", "", "DELIVERED", None, 1, True])
def test_unknown_status_is_a_400(event_store, staff, client_for, given_shipment, status):
    shipment_id = given_shipment()
    with log_unchanged():
        response = client_for(staff).post(status_url(shipment_id), {"status": status},
                                          format="json")
    assert_error(response, 400, "invalid", {"status"})


def test_unknown_shipment_is_a_404(event_store, staff, client_for):
    with log_unchanged():
        response = client_for(staff).post(status_url(uuid4()), {"status": "dispatched"},
                                          format="json")
    assert_error(response, 404, "not_found")


def test_an_order_id_is_not_a_shipment(event_store, staff, customer, client_for, given_order):
    order_id = given_order(customer)
    with log_unchanged():
        response = client_for(staff).post(status_url(order_id), {"status": "dispatched"},
                                          format="json")
    assert_error(response, 404, "not_found")


def test_status_changes_are_staff_only(event_store, customer, client_for, given_shipment):
    shipment_id = given_shipment()
    with log_unchanged():
        assert_error(client_for(customer).post(status_url(shipment_id),
                                               {"status": "dispatched"}, format="json"),
                     403, "permission_denied")
        assert_error(client_for(None).post(status_url(shipment_id),
                                           {"status": "dispatched"}, format="json"),
                     401, "not_authenticated")
