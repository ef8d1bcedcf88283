"""Every string that reaches the app is valid text, and free text shows what it holds
(issue 23). On the old code a lone surrogate in a username crashed the throttle (500),
one in a shipment status crashed the error renderer (500), and addresses and
categories kept bidi, zero-width and escape characters."""

from __future__ import annotations

import json
from decimal import Decimal
from uuid import uuid4

import pytest
from django.test import Client

from catalog.domain import Product
from orders.domain import Order
from shop.errors import InvalidInput
from tests.givens import log_unchanged, register

pytestmark = pytest.mark.django_db

SURROGATE = "\ud800"


def json_body(data) -> bytes:
    return json.dumps(data).encode()  # ensure_ascii: the surrogate travels as \ud800


def string_fields(schema: dict) -> list[tuple[str, str, str]]:
    """(method, path, property) for every string property of every JSON request body."""
    components = schema["components"]["schemas"]
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if not ref:
                continue
            component = components[ref.rsplit("/", 1)[1]]
            for name, prop in component.get("properties", {}).items():
                types = prop.get("type")
                types = types if isinstance(types, list) else [types]
                if "string" in types or "enum" in prop or "$ref" in prop:
                    found.append((method.upper(), path, name))
    return found


@pytest.fixture
def schema(db):
    return Client().get("/api/schema/?format=json").json()


def test_every_string_field_of_every_endpoint_refuses_a_lone_surrogate(
    schema, staff, client_for, event_store
):
    fields = string_fields(schema)
    paths = {path for _, path, _ in fields}
    assert {
        "/api/auth/register/",
        "/api/auth/token/",
        "/api/commands/orders/",
        "/api/commands/products/",
    } <= paths, paths
    assert len(fields) >= 10, fields
    client = client_for(staff)
    problems = []
    with log_unchanged():
        for method, path, name in fields:
            url = path.replace("{", "").replace("}", "")
            for part in ("product_id", "order_id", "shipment_id"):
                url = url.replace(part, str(uuid4()))
            for body in ({name: f"a{SURROGATE}b"}, {name: "ok", f"k{SURROGATE}": 1}):
                response = client.generic(
                    method, url, json_body(body), content_type="application/json"
                )
                if response.status_code != 400 or response.json()["code"] != "invalid":
                    problems.append(
                        f"{method} {path} {name}: {response.status_code} {response.content[:200]!r}"
                    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ["/api/auth/token/", "/api/auth/register/"])
def test_a_surrogate_username_is_400_not_500(db, path):
    response = Client().post(
        path,
        json_body({"username": SURROGATE, "password": "x" * 12}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert "username" in body["errors"]


def test_a_surrogate_deep_in_a_body_is_named(customer, client_for, event_store):
    response = client_for(customer).post(
        "/api/commands/orders/",
        json_body(
            {
                "lines": [{"product_id": str(uuid4()), "quantity": 1, "note": SURROGATE}],
                "shipping_address": "1 Main St",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "lines.0.note" in response.json()["errors"]


def test_a_staff_shipment_status_with_a_surrogate_is_400(staff, client_for, event_store):
    response = client_for(staff).post(
        f"/api/commands/shipments/{uuid4()}/status",
        json_body({"status": SURROGATE}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize(
    "query",
    [
        "q=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "q=%FF%FE",  # not UTF-8 at all
        "%ED%A0%80=1",  # in a name
        "category=a%00b",  # a NUL byte
    ],
)
def test_a_query_parameter_that_is_not_text_is_400(customer, client_for, query):
    response = client_for(customer).get(f"/api/queries/products/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize(
    "value",
    [
        "\xed\xa0\x80",  # the bytes of an encoded surrogate, as WSGI hands them over (Latin-1)
        "\xff",
        "a\x00b",
    ],
)
def test_a_header_that_is_not_text_is_400(db, value):
    response = Client().get("/api/health/", HTTP_X_NOTE=value)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert "X-Note" in body["errors"]


def test_utf8_text_in_headers_and_queries_is_fine(customer, client_for):
    client = client_for(customer)
    response = client.get("/api/queries/products/?q=caf%C3%A9", HTTP_X_NOTE="caf\xc3\xa9")
    assert response.status_code == 200, response.content


HIDDEN = [
    "1 Main St \u202eevil",  # right-to-left override
    "1 Main\u200b St",  # zero-width space
    "1 Main St\x1b[31m",  # a terminal escape
    "\u2066Main\u2069",  # isolates
    "\ufeff",  # invisible only
    "\u200d",  # a joiner alone
]


@pytest.mark.parametrize("address", HIDDEN)
def test_a_shipping_address_shows_what_it_holds(customer, client_for, event_store, address):
    product = register("MUG-1", "Blue mug")
    with log_unchanged():
        response = client_for(customer).post(
            "/api/commands/orders/",
            {"lines": [{"product_id": str(product), "quantity": 1}], "shipping_address": address},
            format="json",
        )
    assert response.status_code == 400, response.content
    assert "shipping_address" in response.json()["errors"]


@pytest.mark.parametrize("category", [c for c in HIDDEN if c.strip()])
def test_a_category_shows_what_it_holds(staff, client_for, event_store, category):
    with log_unchanged():
        response = client_for(staff).post(
            "/api/commands/products/",
            {"sku": "PEN-1", "name": "Pen", "price": "1.00", "stock": 1, "category": category},
            format="json",
        )
    assert response.status_code == 400, response.content
    assert "category" in response.json()["errors"]


@pytest.mark.parametrize(
    "address",
    [
        "12 Harbour Road\nBristol BS1 4RN",  # lines
        "\u05e8\u05d7\u05d5\u05d1 \u05d4\u05e0\u05de\u05dc 3, \u05d7\u05d9\u05e4\u05d4",  # Hebrew
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 house",  # an emoji ZWJ sequence
    ],
)
def test_ordinary_addresses_are_fine(address):
    Order.place(customer_id=1, customer="john", lines=[], shipping_address=address)


def test_the_domain_refuses_a_hidden_category():
    with pytest.raises(InvalidInput) as refused:
        Product.register(
            sku="PEN-1", name="Pen", price=Decimal("1.00"), stock=1, category="Pens\u202e"
        )
    assert set(refused.value.errors) == {"category"}
    assert (
        Product.register(
            sku="PEN-1", name="Pen", price=Decimal("1.00"), stock=1, category=""
        ).category
        == ""
    )
