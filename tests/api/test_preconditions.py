"""If-Match on commands against an existing aggregate, ETag on every success, and
commands that change nothing append nothing."""

from __future__ import annotations

import pytest

from shop.eventstore import head_position
from tests.api.helpers import assert_error
from tests.givens import log_unchanged

pytestmark = pytest.mark.django_db


def test_a_stale_if_match_is_refused_and_appends_nothing(event_store, staff, client_for,
                                                         given_product):
    mug = given_product()  # version 1
    client = client_for(staff)
    renamed = client.post(f"/api/commands/products/{mug}/rename", {"name": "Green mug"},
                          format="json", HTTP_IF_MATCH='"1"')
    assert renamed.status_code == 200
    assert renamed["ETag"] == '"2"'
    with log_unchanged():
        stale = client.post(f"/api/commands/products/{mug}/reprice", {"price": "5.00"},
                            format="json", HTTP_IF_MATCH='"1"')
    assert_error(stale, 412, "precondition_failed")
    current = client.post(f"/api/commands/products/{mug}/reprice", {"price": "5.00"},
                          format="json", HTTP_IF_MATCH=renamed["ETag"])
    assert current.status_code == 200
    assert current.json()["version"] == 3


def test_if_match_guards_orders_and_shipments(event_store, staff, customer, client_for,
                                              given_order):
    order = given_order(customer)
    staff_client = client_for(staff)
    shipment = staff_client.post("/api/commands/shipments/",
                                 {"order_id": str(order), "carrier": "DHL"}, format="json")
    assert shipment.status_code == 201 and shipment["ETag"] == '"1"'
    shipment_id = shipment.json()["shipment_id"]
    with log_unchanged():
        stale_order = client_for(customer).post(f"/api/commands/orders/{order}/cancel", {},
                                                format="json", HTTP_IF_MATCH='"1"')
        stale_shipment = staff_client.post(f"/api/commands/shipments/{shipment_id}/status",
                                           {"status": "dispatched"}, format="json",
                                           HTTP_IF_MATCH='"2"')
    assert_error(stale_order, 412, "precondition_failed")
    assert_error(stale_shipment, 412, "precondition_failed")
    moved = staff_client.post(f"/api/commands/shipments/{shipment_id}/status",
                              {"status": "dispatched"}, format="json", HTTP_IF_MATCH='"1"')
    assert moved.status_code == 200 and moved["ETag"] == '"2"'


@pytest.mark.parametrize("value", ["abc", '"1.5"', '"-1"', '""'])
def test_a_malformed_if_match_is_a_400(event_store, staff, client_for, given_product, value):
    mug = given_product()
    with log_unchanged():
        response = client_for(staff).post(f"/api/commands/products/{mug}/restock",
                                          {"quantity": 1}, format="json", HTTP_IF_MATCH=value)
    assert_error(response, 400, "invalid", {"If-Match"})


def test_renaming_or_repricing_to_the_current_value_appends_nothing(
    event_store, staff, client_for, given_product
):
    mug = given_product(name="Blue mug", price="19.99")
    registered_at = head_position()
    given_product("CUP-1")  # the log moves on: the answer's position is the mug's own
    client = client_for(staff)
    with log_unchanged():
        rename = client.post(f"/api/commands/products/{mug}/rename", {"name": "Blue mug"},
                             format="json")
        reprice = client.post(f"/api/commands/products/{mug}/reprice", {"price": "19.99"},
                              format="json", HTTP_IF_MATCH='"1"')
    for response in (rename, reprice):
        assert response.status_code == 200, response.content
        assert response.json() == {"product_id": str(mug), "version": 1,
                                   "position": registered_at}
        assert response["ETag"] == '"1"'


def test_the_schema_documents_the_headers_on_every_command(client_for):
    schema = client_for().get("/api/schema/", {"format": "json"}).json()
    commands = {path: item["post"] for path, item in schema["paths"].items()
                if path.startswith("/api/commands/")}
    assert len(commands) == 8
    for path, operation in commands.items():
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        on_existing = "{" in path
        assert headers == ({"Idempotency-Key", "If-Match"} if on_existing
                           else {"Idempotency-Key"}), path
        responses = operation["responses"]
        success = next(code for code in responses if code.startswith("2"))
        assert {"ETag", "Idempotent-Replayed"} <= set(responses[success]["headers"]), path
        assert "422" in responses and "409" in responses, path
        assert ("412" in responses) == on_existing, path
