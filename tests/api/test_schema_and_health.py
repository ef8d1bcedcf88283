"""The OpenAPI document, the interactive docs and the health endpoint."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

import shop.eventstore
from projections.models import Checkpoint
from shop.eventstore import ShopApplication

pytestmark = pytest.mark.django_db

# Every path of API.md (plus the operations endpoints), as the schema names them.
CONTRACT_PATHS = {
    ("post", "/api/auth/register/"),
    ("post", "/api/auth/token/"),
    ("post", "/api/commands/products/"),
    ("post", "/api/commands/products/{product_id}/rename/"),
    ("post", "/api/commands/products/{product_id}/reprice/"),
    ("post", "/api/commands/products/{product_id}/restock/"),
    ("post", "/api/commands/orders/"),
    ("post", "/api/commands/orders/{order_id}/cancel/"),
    ("post", "/api/commands/shipments/"),
    ("post", "/api/commands/shipments/{shipment_id}/status/"),
    ("get", "/api/queries/products/"),
    ("get", "/api/queries/orders/"),
    ("get", "/api/queries/orders/{order_id}/"),
    ("get", "/api/queries/orders/{order_id}/events/"),
    ("get", "/api/queries/projections/"),
    ("get", "/api/health/"),
}


def test_the_schema_is_valid_openapi_3(schema):
    validate_schema(schema)  # drf-spectacular's own validation; raises when invalid
    assert schema["openapi"].startswith("3.")


def test_the_schema_lists_every_endpoint_of_the_contract(schema):
    documented = {
        (method, path) for path, operations in schema["paths"].items() for method in operations
    }
    assert documented >= CONTRACT_PATHS, CONTRACT_PATHS - documented


def test_the_schema_documents_bodies_and_error_codes(schema):
    register = schema["paths"]["/api/commands/products/"]["post"]
    assert "requestBody" in register
    assert {"201", "400", "401", "403", "409"} <= set(register["responses"])
    place = schema["paths"]["/api/commands/orders/"]["post"]
    assert {"201", "400", "401", "409"} <= set(place["responses"])
    history = schema["paths"]["/api/queries/orders/"]["get"]
    assert {"200", "401", "503"} <= set(history["responses"])
    assert {"min_position", "wait"} <= {p["name"] for p in history["parameters"]}


def test_the_interactive_docs_are_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page and "/static/drf_spectacular_sidecar/" in page
    assert "cdn.jsdelivr.net" not in page


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_health_reports_database_broker_and_projection_lag_to_staff(staff_client, event_store):
    response = staff_client.get("/api/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["broker"].startswith("not configured")
    projections = body["projections"]
    assert (projections["worst_lag_events"], projections["failed"], projections["lagging"]) == (
        0, [], []
    )
    assert projections["each"]["sales"] == {
        "position": 0, "head": 0, "lag_events": 0, "lag_seconds": 0.0, "status": "ok"
    }


def test_anonymous_callers_get_the_status_only(client, customer, event_store):
    assert client.get("/api/health/").json() == {"status": "ok"}
    client.force_login(customer)
    assert client.get("/api/health/").json() == {"status": "ok"}
    # bad credentials are no error here: just no details
    response = client.get("/api/health/", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_is_degraded_when_a_projection_has_failed(staff_client, event_store):
    Checkpoint.objects.create(
        projection="order_history", upstream=ShopApplication.name, status=Checkpoint.FAILED
    )
    body = staff_client.get("/api/health/").json()
    assert body["status"] == "degraded"
    assert body["projections"]["failed"] == ["order_history"]


def test_health_is_degraded_when_a_projection_lags_past_the_alert(
    staff_client, settings, event_store
):
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from demo.management.commands.seed_demo import event_clock
    from tests.givens import project, register

    settings.PROJECTION_LAG_ALERT_SECONDS = 60
    with event_clock(timezone.now() - timedelta(seconds=30)):
        register("MUG-1")  # unprocessed for 30 s: within the alert
    assert staff_client.get("/api/health/").json()["status"] == "ok"

    with event_clock(timezone.now() - timedelta(seconds=90)):
        register("PEN-1")  # the log's order is not the clock's: still the oldest is 30 s
    assert staff_client.get("/api/health/").json()["status"] == "ok"

    settings.PROJECTION_LAG_ALERT_SECONDS = 20
    body = staff_client.get("/api/health/").json()
    assert body["status"] == "degraded"
    assert sorted(body["projections"]["lagging"]) == [
        "activity", "order_history", "product_catalog", "sales"
    ]
    assert Client().get("/api/health/").json() == {"status": "degraded"}

    project()
    assert staff_client.get("/api/health/").json()["status"] == "ok"


def test_health_is_degraded_when_the_event_store_is_unreachable(client, event_store,
                                                               monkeypatch):
    """The write side down: queries still answer from the read side, so the shop is
    degraded, not down (tests/integration/test_database_outage.py has the rest)."""
    real_env = shop.eventstore.event_store_env

    def unreachable() -> dict[str, str]:
        # Nothing listens on port 1: connections are refused at once.
        return {**real_env(), "POSTGRES_PORT": "1", "POSTGRES_CONNECT_TIMEOUT": "1"}

    # This process's event store is rebuilt on first use, pointed at nothing; the
    # fixture's own application is put back afterwards.
    fixture_app = shop.eventstore._app
    shop.eventstore._app = None
    monkeypatch.setattr(shop.eventstore, "event_store_env", unreachable)
    try:
        response = client.get("/api/health/")
    finally:
        shop.eventstore._app = fixture_app
    assert response.status_code == 200
    assert response.json() == {"status": "degraded"}


def test_health_is_never_throttled(client, event_store):
    from tests.support.throttle import throttle_rates

    with throttle_rates(user="2/minute"):
        statuses = {client.get("/api/health/").status_code for _ in range(5)}
        products = [client.get("/api/queries/products/").status_code for _ in range(3)]
    assert products == [200, 200, 429]  # other endpoints are limited
    assert statuses == {200}
