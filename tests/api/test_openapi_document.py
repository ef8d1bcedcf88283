"""The published OpenAPI document is valid, declares what the API does, and is true.

Every response of the API suite is validated against it (``tests/api/conftest.py``);
here every documented operation is also probed, without any knowledge of it beyond
the document, with the requests clients get wrong (no or bad credentials, a customer
on a staff endpoint, unknown ids, malformed bodies and parameters). A new endpoint is
covered as soon as it is documented.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path, operation


def test_the_schema_passes_openapi_spec_validator(schema):
    validate(schema)  # raises on the first violation (e.g. format email, default "")
    assert schema["openapi"] == "3.1.0"


def test_statuses_are_named_enums(schema):
    components = schema["components"]["schemas"]
    assert set(components["OrderStatus"]["enum"]) == {"placed", "cancelled", "shipped", "delivered"}
    assert components["ShipmentStatus"]["enum"] == [
        "created", "dispatched", "in_transit", "delivered"
    ]
    assert components["ProjectionStatus"]["enum"] == ["ok", "failed"]
    assert components["HealthStatus"]["enum"] == ["ok", "degraded", "down"]
    assert "StatusEnum" not in components
    history = components["OrderHistory"]["properties"]
    assert history["status"] == {"$ref": "#/components/schemas/OrderStatus"}
    # A null shipment validates: a reference or null, not allOf + nullable.
    assert {"type": "null"} in history["shipment"]["oneOf"]


def test_every_error_code_is_an_enum_per_endpoint(schema):
    place = schema["paths"]["/api/commands/orders/"]["post"]["responses"]
    conflict = place["409"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    code = schema["components"]["schemas"][conflict]["properties"]["code"]
    enum_ref = code.get("$ref") or code["allOf"][0]["$ref"]
    assert schema["components"]["schemas"][enum_ref.split("/")[-1]]["enum"] == [
        "insufficient_stock", "idempotency_key_in_use", "concurrent_update"
    ]
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path != "/api/health/":
                assert "content" in response, (method, path, status)


def test_order_events_are_typed_by_their_type(schema):
    event = schema["components"]["schemas"]["OrderEvent"]
    assert event["discriminator"]["propertyName"] == "type"
    assert set(event["discriminator"]["mapping"]) == {
        "Order.Placed", "Order.Cancelled", "Order.Shipped", "Order.Delivered"
    }
    placed = schema["components"]["schemas"]["OrderPlacedData"]
    assert {"customer", "lines", "total", "shipping_address"} <= set(placed["required"])


def test_operation_ids_read_well_and_open_endpoints_need_no_login(schema):
    ids = {(m, p): op["operationId"] for m, p, op in operations(schema)}
    assert ids[("post", "/api/commands/orders/")] == "order_place"
    assert ids[("post", "/api/commands/products/{product_id}/rename/")] == "product_rename"
    assert ids[("get", "/api/queries/orders/")] == "order_history_list"
    assert ids[("get", "/api/queries/projections/")] == "projection_status_list"
    assert len(set(ids.values())) == len(ids)
    for method, path in [("post", "/api/auth/token/"), ("post", "/api/auth/register/"),
                         ("get", "/api/health/"), ("get", "/api/queries/products/")]:
        assert schema["paths"][path][method]["security"] == [], path  # said, for linters
    secured = schema["paths"]["/api/commands/orders/"]["post"]["security"]
    assert {"bearerAuth": []} in secured and {} not in secured
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        **schema["components"]["securitySchemes"]["bearerAuth"],
        "type": "http", "scheme": "bearer",
    }


def test_commands_declare_their_headers(schema):
    def headers(method, path):
        operation = schema["paths"][path][method]
        request = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        return request, operation["responses"]

    request, responses = headers("post", "/api/commands/products/{product_id}/rename/")
    assert request == {"Idempotency-Key", "If-Match"}
    assert {"ETag", "Idempotent-Replayed"} <= set(responses["200"]["headers"])
    assert {"412", "422"} <= set(responses)
    request, responses = headers("post", "/api/commands/orders/")
    assert request == {"Idempotency-Key"} and "412" not in responses
    assert "Retry-After" in responses["429"]["headers"]


def test_parameters_and_pages_declare_their_limits(schema):
    history = schema["paths"]["/api/queries/orders/"]["get"]
    params = {p["name"]: p["schema"] for p in history["parameters"]}
    assert params["min_position"]["minimum"] == 0
    assert (params["wait"]["minimum"], params["wait"]["maximum"]) == (0, 30)
    assert (params["page_size"]["minimum"], params["page_size"]["maximum"]) == (1, 100)
    page = schema["components"]["schemas"]["PaginatedOrderHistoryList"]
    assert set(page["required"]) == {"next", "previous", "results"}
    assert "null" in page["properties"]["next"]["type"]
    assert "api.example.org" not in str(schema)


# --- every operation, probed from the document alone ---------------------------------


def concrete(path: str) -> str:
    """The path with a fresh UUID for each parameter (an id nobody has)."""
    import re

    return re.sub(r"\{[^}]+\}", lambda _: str(uuid4()), path)


def call(client, method, path, **kwargs):
    return getattr(client, method)(path, **kwargs)


def test_every_operation_answers_what_it_documents_to_bad_requests(
    schema, event_store, staff, customer, client_for, schema_validator
):
    """Each probe's response is validated by the autouse fixture (status declared,
    body and headers as documented); here we also check the status is an error."""
    from django.conf import settings
    from rest_framework.test import APIClient

    from shop.accounts.services import token_issue

    def bearer(token: str | None):
        def make() -> APIClient:
            client = APIClient()
            value = token or token_issue(user=user_of[make]).token  # a fresh one: logout
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {value}")  # ends the last
            return client
        return make

    user_of: dict = {}
    clients = {"anonymous": lambda: client_for(None), "bad token": bearer("not-a-token"),
               "customer": bearer(None), "staff": bearer(None)}
    user_of[clients["customer"]], user_of[clients["staff"]] = customer, staff
    seen_before = schema_validator.seen.copy()
    for method, path, operation in operations(schema):
        url = concrete(path)
        secured = bool(operation.get("security"))
        for who, client in clients.items():
            body = {"format": "json", "data": {}} if method != "get" else {}
            response = call(client(), method, url, **body)
            assert str(response.status_code) in operation["responses"], (method, path, who)
            if who in ("anonymous", "bad token") and secured:
                assert response.status_code == 401, (method, path, who)
        if method == "get":
            for query in ({"min_position": "-1"}, {"wait": "soon"}, {"cursor": "garbage"}):
                response = clients["staff"]().get(url, query)
                assert response.status_code in (200, 400, 404), (path, query)  # 404: the id
        elif "requestBody" in operation:
            response = call(clients["staff"](), method, url, data="{not json",
                            content_type="application/json")
            assert response.status_code in (400, 404), (method, path)
        if "requestBody" in operation:
            too_large = call(clients["staff"](), method, url, content_type="application/json",
                             data=b" " * (settings.MAX_REQUEST_BODY_BYTES + 1))
            assert too_large.status_code == 413, (method, path)
        nul = call(clients["staff"](), method, f"{url}?q=%00")
        assert nul.status_code == 400, (method, path)  # any endpoint: a NUL in the query
    probed = {(m, p) for m, p, _ in schema_validator.seen - seen_before}
    assert probed == {(m, p) for m, p, _ in operations(schema)}


def test_health_details_are_typed_by_the_modules_that_report_them(
    schema, event_store, staff, client_for, schema_validator
):
    health = schema["components"]["schemas"]["Health"]["properties"]
    assert "ProjectionsHealth" in str(health["projections"])
    lag = schema["components"]["schemas"]["ProjectionLag"]["properties"]
    assert lag["status"] == {"$ref": "#/components/schemas/ProjectionStatus"}
    # A staff answer has every detail; the autouse fixture validated it.
    before = schema_validator.seen.copy()
    body = client_for(staff).get("/api/health/").json()
    assert set(body["projections"]["each"]) >= {"order_history", "product_catalog"}
    assert schema_validator.seen - before
