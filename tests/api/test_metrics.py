"""``GET /metrics``: Prometheus text that parses, for staff or the metrics token only,
with commands by name and outcome, query latency, and each projection's figures."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shop.eventstore import head_position
from tests.givens import project, register

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-123"


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a successful scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.fixture
def staff_session(client, staff):
    client.force_login(staff)
    return client


def test_staff_see_each_projection_and_the_log_head(staff_session, event_store):
    register("MUG-1")
    register("PEN-1")
    project("product_catalog")

    samples = scrape(staff_session)

    head = head_position()
    assert samples[("shop_event_log_head", ())] == head
    catalog = (("projection", "product_catalog"),)
    assert samples[("shop_projection_position", catalog)] == head
    assert samples[("shop_projection_lag_events", catalog)] == 0
    assert samples[("shop_projection_lag_seconds", catalog)] == 0
    assert samples[("shop_projection_failed", catalog)] == 0
    sales = (("projection", "sales"),)
    assert samples[("shop_projection_position", sales)] == 0
    assert samples[("shop_projection_lag_events", sales)] == head
    assert samples[("shop_projection_lag_seconds", sales)] > 0


def test_commands_are_counted_by_name_and_outcome(staff_session, client_for, staff,
                                                  event_store):
    api = client_for(staff)
    before = scrape(staff_session)
    body = {"sku": "MUG-1", "name": "Blue mug", "price": "19.99", "stock": 5}

    assert api.post("/api/commands/products/", body, format="json").status_code == 201
    assert api.post("/api/commands/products/", body, format="json").status_code == 409
    assert api.get("/api/queries/products/").status_code == 200

    after = scrape(staff_session)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("shop_commands_total", command="product-register", outcome="ok") == 1
    assert delta("shop_commands_total", command="product-register",
                 outcome="duplicate_sku") == 1
    assert delta("shop_command_duration_seconds_count", command="product-register",
                 outcome="ok") == 1
    assert delta("shop_command_duration_seconds_bucket", command="product-register",
                 outcome="ok", le="+Inf") == 1
    assert delta("shop_query_duration_seconds_count", query="product-list", outcome="ok") == 1


def test_the_metrics_token_opens_metrics(client, settings, event_store):
    settings.METRICS_TOKEN = TOKEN

    samples = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ("shop_event_log_head", ()) in samples

    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "not_authenticated"


def test_without_a_configured_token_no_bearer_opens_metrics(client, settings, event_store):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_anonymous_and_customers_are_refused(client, customer, settings, event_store):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"

    client.force_login(customer)
    response = client.get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
