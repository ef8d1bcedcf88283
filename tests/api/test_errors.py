"""The one exception handler: every error is ``{code, detail[, errors]}``, never a 5xx."""

from uuid import uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, OperationalError
from rest_framework import serializers

from shop.api import flatten_errors
from shop.errors import ApplicationError, InvalidInput
from tests.api.helpers import assert_error
from tests.givens import log_unchanged

PRODUCTS = "/api/commands/products/"
COMMANDS = [
    "/api/commands/products/",
    "/api/commands/orders/",
    "/api/commands/shipments/",
    f"/api/commands/products/{uuid4()}/rename",
    f"/api/commands/products/{uuid4()}/reprice",
    f"/api/commands/products/{uuid4()}/restock",
    f"/api/commands/orders/{uuid4()}/cancel",
    f"/api/commands/shipments/{uuid4()}/status",
    "/api/auth/register/",
    "/api/auth/token/",
]


# --- malformed bodies ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", COMMANDS)
@pytest.mark.parametrize("raw", [b'{"sku": ', b"{'single': 1}", b"\xff\xfe", b"[1,"])
def test_malformed_json_is_a_parse_error(event_store, staff, client_for, path, raw):
    with log_unchanged():
        response = client_for(staff).post(path, raw, content_type="application/json")
    body = assert_error(response, 400, "parse_error")
    assert body["errors"] == {"non_field_errors": [body["detail"]]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
     b'{"stock": 1' + b"0" * 5000 + b"}"],
)
def test_pathological_json_is_a_parse_error(event_store, staff, client_for, raw):
    with log_unchanged():
        response = client_for(staff).post(PRODUCTS, raw, content_type="application/json")
    assert_error(response, 400, "parse_error")


@pytest.mark.django_db
@pytest.mark.parametrize("path", COMMANDS)
@pytest.mark.parametrize("raw", [b"[]", b'[{"sku": "A"}]', b'"text"', b"42", b"null", b"true"])
def test_a_body_that_is_not_an_object_is_invalid(event_store, staff, client_for, path, raw):
    with log_unchanged():
        response = client_for(staff).post(path, raw, content_type="application/json")
    body = assert_error(response, 400, "invalid")
    assert list(body["errors"]) == ["non_field_errors"]


@pytest.mark.django_db
def test_form_encoded_body_is_unsupported(event_store, staff, client_for):
    with log_unchanged():
        response = client_for(staff).post(PRODUCTS, {"sku": "A"})  # multipart
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.django_db
def test_an_empty_body_reports_the_missing_fields(event_store, staff, client_for):
    response = client_for(staff).post(PRODUCTS, b"", content_type="application/json")
    assert_error(response, 400, "invalid", {"sku", "name", "price", "stock"})


# --- methods, paths, content negotiation -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_not_allowed(event_store, staff, client_for, method):
    response = getattr(client_for(staff), method)(PRODUCTS)
    body = assert_error(response, 405, "method_not_allowed")
    assert method.upper() in body["detail"]


@pytest.mark.django_db
def test_unacceptable_accept_header(event_store, staff, client_for):
    response = client_for(staff).post(PRODUCTS, {}, format="json", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/api/commands/nothing/", "/api/commands/nothing", f"/api/commands/products/{uuid4()}/delete",
     "/api/commands/orders/xyz/cancel/", "/api/commands/orders/xyz/cancel", "/api/nowhere",
     "/api/queries/orders/xyz/", "/api/commands/orders//"],
)
@pytest.mark.parametrize("debug", [False, True])
def test_unknown_paths_are_a_json_404_debug_or_not(event_store, staff, client_for, settings,
                                                   path, debug):
    settings.DEBUG = debug  # with DEBUG on, Django would answer its HTML 404 page
    assert_error(client_for(staff).post(path, {}, format="json"), 404, "not_found")
    assert_error(client_for(staff).get(path), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("path", [
    "/api/commands/products", f"/api/commands/products/{uuid4()}/rename",
    f"/api/commands/products/{uuid4()}/rename/"])
def test_every_api_path_ends_in_a_slash_and_is_answered_the_same_without(
        event_store, staff, client_for, path):
    """No redirect (a redirected POST loses its body): the same view, the same answer."""
    with log_unchanged():
        response = client_for(staff).post(path, {"name": ""}, format="json")
    assert_error(response, 400, "invalid")
    assert response.wsgi_request.path.endswith("/")


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_wrong_method_is_a_json_405(event_store, staff, client_for, settings, debug):
    settings.DEBUG = debug
    for path in ("/api/commands/orders/", "/api/commands/orders", "/api/health"):
        response = client_for(staff).delete(path)
        assert_error(response, 405, "method_not_allowed")
        assert "POST" in response["Allow"] or "GET" in response["Allow"]


# --- errors escaping from the event store ----------------------------------------------


@pytest.mark.django_db
def test_aggregate_not_found_from_the_library_is_a_404(event_store, staff, client_for,
                                                      monkeypatch):
    def missing(**kwargs):
        raise AggregateNotFoundError(kwargs["product_id"])

    monkeypatch.setattr("catalog.apis.product_rename", missing)
    response = client_for(staff).post(f"/api/commands/products/{uuid4()}/rename",
                                      {"name": "x"}, format="json")
    assert_error(response, 404, "not_found")


@pytest.mark.django_db
def test_an_integrity_error_that_escapes_is_concurrent_update(event_store, staff, client_for,
                                                             monkeypatch):
    def conflict(**kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr("catalog.apis.product_restock", conflict)
    response = client_for(staff).post(f"/api/commands/products/{uuid4()}/restock",
                                      {"quantity": 1}, format="json")
    body = assert_error(response, 409, "concurrent_update")
    assert "try again" in body["detail"]


@pytest.mark.django_db
def test_an_unreachable_event_store_is_a_503_not_a_500(event_store, staff, client_for,
                                                       monkeypatch):
    def down(**kwargs):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr("catalog.apis.product_restock", down)
    response = client_for(staff).post(f"/api/commands/products/{uuid4()}/restock",
                                      {"quantity": 1}, format="json")
    assert_error(response, 503, "service_unavailable")
    assert response["Retry-After"] == "1"


@pytest.mark.django_db
def test_a_400_application_error_without_fields_still_has_errors(event_store, staff,
                                                                 client_for, monkeypatch):
    def reject(**kwargs):
        raise InvalidInput("No.")

    monkeypatch.setattr("catalog.apis.product_restock", reject)
    response = client_for(staff).post(f"/api/commands/products/{uuid4()}/restock",
                                      {"quantity": 1}, format="json")
    body = assert_error(response, 400, "invalid")
    assert body == {"code": "invalid", "detail": "No.", "errors": {}}


@pytest.mark.django_db
@pytest.mark.undocumented_response  # 410 is made up here: no endpoint answers it
def test_an_application_error_keeps_its_status_and_code(event_store, staff, client_for,
                                                       monkeypatch):
    class Gone(ApplicationError):
        code, status = "gone", 410

    def gone(**kwargs):
        raise Gone("It left.")

    monkeypatch.setattr("catalog.apis.product_restock", gone)
    response = client_for(staff).post(f"/api/commands/products/{uuid4()}/restock",
                                      {"quantity": 1}, format="json")
    assert response.status_code == 410
    assert response.json() == {"code": "gone", "detail": "It left."}


# --- flattening nested validation errors (no database) ---------------------------------


class LineIn(serializers.Serializer):
    product_id = serializers.UUIDField()
    quantity = serializers.IntegerField(min_value=1)


class OrderIn(serializers.Serializer):
    lines = LineIn(many=True, min_length=1)
    tags = serializers.ListField(child=serializers.IntegerField(), required=False)
    note = serializers.CharField()


def errors_for(data) -> dict:
    serializer = OrderIn(data=data)
    assert not serializer.is_valid()
    return flatten_errors(serializer.errors)


def test_flatten_names_list_items_by_index():
    good = {"product_id": str(uuid4()), "quantity": 1}
    errors = errors_for({"lines": [good, {"product_id": "x", "quantity": 0}], "note": "n"})
    assert set(errors) == {"lines.1.product_id", "lines.1.quantity"}


def test_flatten_puts_a_nested_non_field_error_on_its_parent():
    assert set(errors_for({"lines": [], "note": "n"})) == {"lines"}
    assert set(errors_for({"lines": "x", "note": "n"})) == {"lines"}


def test_flatten_list_field_items():
    errors = errors_for({"lines": [{"product_id": str(uuid4()), "quantity": 1}],
                         "tags": [1, "x"], "note": "n"})
    assert set(errors) == {"tags.1"}


def test_flatten_top_level_errors():
    assert flatten_errors(["Bad."]) == {"non_field_errors": ["Bad."]}
    assert flatten_errors("Bad.") == {"non_field_errors": ["Bad."]}
    assert flatten_errors({"non_field_errors": ["Bad."]}) == {"non_field_errors": ["Bad."]}
    assert flatten_errors({"a": {"b": ["c"]}}) == {"a.b": ["c"]}


# --- never a 5xx for bad input ---------------------------------------------------------

ODD_VALUES = [None, True, 1, -1, 0, 1.5, "x", "", [], {}, "\x00", "a" * 10_000, 1e308, 10**30,
              -1e308, "1e400", "NaN", "-0", [{}], [{"product_id": None}]]


@pytest.mark.django_db
def test_no_odd_field_value_causes_a_server_error(event_store, staff, customer, client_for,
                                                  given_product, given_order):
    mug = given_product()
    order = given_order(customer, [(mug, 1)])
    endpoints = {
        "/api/commands/products/": ["sku", "name", "price", "stock"],
        f"/api/commands/products/{mug}/rename": ["name"],
        f"/api/commands/products/{mug}/reprice": ["price"],
        f"/api/commands/products/{mug}/restock": ["quantity"],
        "/api/commands/orders/": ["lines", "shipping_address"],
        f"/api/commands/orders/{order}/cancel": ["reason"],
        "/api/commands/shipments/": ["order_id", "carrier"],
        f"/api/commands/shipments/{uuid4()}/status": ["status"],
        "/api/auth/register/": ["username", "password", "email"],
        "/api/auth/token/": ["username", "password"],
    }
    valid = {"sku": "B-1", "name": "n", "price": "1.00", "stock": 1, "quantity": 1,
             "lines": [{"product_id": str(mug), "quantity": 1}], "shipping_address": "a",
             "reason": "", "order_id": str(order), "carrier": "c", "status": "dispatched",
             "username": "zed", "password": "a-long-password-1", "email": ""}
    client = client_for(staff)
    server_errors = []
    for path, fields in endpoints.items():
        for field in fields:
            for value in ODD_VALUES:
                body = {name: valid[name] for name in fields} | {field: value}
                status = client.post(path, body, format="json").status_code
                if status >= 500:
                    server_errors.append((path, field, repr(value)[:30], status))
    assert server_errors == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [(PRODUCTS, b'{"sku": "S-1", "name": "\\ud800", "price": "1.00", "stock": 1}', "name"),
     ("/api/auth/register/", b'{"username": "abc", "password": "\\udfff-long-password"}',
      "password")],
)
def test_a_lone_surrogate_is_a_field_error(event_store, staff, client_for, path, raw, field):
    with log_unchanged():
        response = client_for(staff).post(path, raw, content_type="application/json")
    assert_error(response, 400, "invalid", {field})
