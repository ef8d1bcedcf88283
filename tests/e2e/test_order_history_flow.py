"""The whole flow over HTTP: a command, a real broker, a Celery worker, the query API.

Given a catalog and a customer, when commands are accepted, then the order history
(read only from read-model tables, filled by the worker) shows them once the
projections pass the command's ``position``.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def staff_http(http_as, staff):
    return http_as(staff)


@pytest.fixture
def john_http(http_as, customer):
    return http_as(customer)


def register_product(staff_http, sku: str, name: str, price: str = "19.99", stock: int = 10):
    response = staff_http.post(
        "/api/commands/products/", {"sku": sku, "name": name, "price": price, "stock": stock}
    )
    assert response.status == 201, response.body
    return response.body


def place_order(john_http, lines: list[tuple[str, int]]):
    response = john_http.post(
        "/api/commands/orders/",
        {
            "lines": [{"product_id": pid, "quantity": qty} for pid, qty in lines],
            "shipping_address": "12 Harbour Road, Bristol",
        },
    )
    assert response.status == 201, response.body
    return response.body


def order_after(client, order_id: str, position: int) -> dict:
    response = client.read_after(f"/api/queries/orders/{order_id}", position)
    assert response.status == 200, response.body
    assert int(response.headers["x-projection-position"]) >= position
    return response.body


def test_a_placed_order_shows_in_the_history(workers, staff_http, john_http):
    mug = register_product(staff_http, "MUG-1", "Blue mug", price="19.99")
    order = place_order(john_http, [(mug["product_id"], 3)])
    assert order["total"] == "59.97"

    response = john_http.read_after("/api/queries/orders/", order["position"])

    assert response.status == 200, response.body
    assert int(response.headers["x-projection-position"]) >= order["position"]
    [row] = response.body["results"]
    assert row["order_id"] == order["order_id"]
    assert row["customer"] == "john"
    assert row["status"] == "placed"
    assert row["total"] == "59.97"
    assert row["shipment"] is None
    [line] = row["lines"]
    assert (line["sku"], line["product_name"], line["quantity"]) == ("MUG-1", "Blue mug", 3)
    assert (line["unit_price"], line["line_total"]) == ("19.99", "59.97")


def test_a_renamed_product_shows_its_new_name_in_past_orders(workers, staff_http, john_http):
    mug = register_product(staff_http, "MUG-1", "Blue mug")
    order = place_order(john_http, [(mug["product_id"], 1)])

    renamed = staff_http.post(
        f"/api/commands/products/{mug['product_id']}/rename", {"name": "Blue ceramic mug"}
    )

    assert renamed.status == 200, renamed.body
    assert renamed.body["position"] > order["position"]
    row = order_after(john_http, order["order_id"], renamed.body["position"])
    assert row["lines"][0]["product_name"] == "Blue ceramic mug"
    assert row["lines"][0]["unit_price"] == "19.99"


def test_a_delivered_shipment_delivers_the_order_in_the_history(
    workers, staff_http, john_http
):
    mug = register_product(staff_http, "MUG-1", "Blue mug")
    order = place_order(john_http, [(mug["product_id"], 2)])
    shipment = staff_http.post(
        "/api/commands/shipments/", {"order_id": order["order_id"], "carrier": "DHL"}
    )
    assert shipment.status == 201, shipment.body
    shipped = order_after(john_http, order["order_id"], shipment.body["position"])
    assert shipped["status"] == "shipped"
    assert shipped["shipment"]["status"] == "created"
    assert shipped["shipment"]["carrier"] == "DHL"

    for status in ("dispatched", "in_transit", "delivered"):
        changed = staff_http.post(
            f"/api/commands/shipments/{shipment.body['shipment_id']}/status", {"status": status}
        )
        assert changed.status == 200, changed.body

    row = order_after(john_http, order["order_id"], changed.body["position"])
    assert row["status"] == "delivered"
    assert row["shipment"]["shipment_id"] == shipment.body["shipment_id"]
    assert row["shipment"]["status"] == "delivered"


def test_commands_are_accepted_while_the_broker_is_down_and_read_side_catches_up(
    workers, broker, staff_http, john_http
):
    mug = register_product(staff_http, "MUG-1", "Blue mug", stock=10)
    first = place_order(john_http, [(mug["product_id"], 1)])
    order_after(john_http, first["order_id"], first["position"])

    broker.stop()
    time.sleep(1)  # let a catch-up already delivered to the worker finish first
    accepted = []
    for _ in range(3):
        started = time.monotonic()
        accepted.append(place_order(john_http, [(mug["product_id"], 1)]))
        assert time.monotonic() - started < 10, "a command waited on the dead broker"
    # While the broker is down nothing reaches the worker: the read side stays behind.
    behind = john_http.get(f"/api/queries/orders/?min_position={accepted[-1]['position']}&wait=1")
    assert behind.status == 503, behind.body
    assert behind.body["code"] == "projection_behind"
    assert "retry-after" in behind.headers

    broker.start()  # same port: no manual step after this
    response = john_http.read_after("/api/queries/orders/", accepted[-1]["position"], timeout=60)

    assert response.status == 200, (response.body, workers.logs())
    shown = {row["order_id"] for row in response.body["results"]}
    assert shown == {first["order_id"], *(order["order_id"] for order in accepted)}
    products = john_http.read_after("/api/queries/products/", accepted[-1]["position"])
    assert products.status == 200, products.body
    [product] = products.body["results"]
    assert product["stock_available"] == 6


def test_the_worker_logs_each_batch_with_the_request_ids_it_applied(
    workers, staff_http, john_http
):
    mug = register_product(staff_http, "MUG-1", "Blue mug")
    response = john_http.post("/api/commands/orders/", {
        "lines": [{"product_id": mug["product_id"], "quantity": 1}],
        "shipping_address": "12 Harbour Road, Bristol",
    })
    assert response.status == 201, response.body
    request_id = response.headers["x-request-id"]
    order_after(john_http, response.body["order_id"], response.body["position"])

    def batch_lines() -> list[dict]:
        lines = []
        for text in workers.logs(chars=200_000).splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue  # a worker banner line
            if request_id in (line.get("request_ids") or ()):
                lines.append(line)
        return lines

    deadline = time.monotonic() + 30
    while not {line["projection"] for line in batch_lines()} >= {"order_history", "activity"}:
        assert time.monotonic() < deadline, workers.logs()
        time.sleep(0.2)
    line = batch_lines()[0]
    assert line["logger"] == "projections.runner" and line["level"] == "INFO"
    assert line["position"] >= response.body["position"]
