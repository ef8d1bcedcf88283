"""The trigger's pacing, on a real Redis: one message per command for all the
projections it claims, sent at once after a quiet spell and held back (a countdown)
while the projections' last catch-up started less than PROJECTION_TRIGGER_INTERVAL
ago. And a real worker runs those held-back messages without any sweep's help.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime

import pytest
import redis

from projections import tasks
from projections.registry import PROJECTORS
from projections.tasks import PENDING_KEY, STARTED_KEY, countdown, trigger_projections
from tests.support.processes import Services, app_env

pytestmark = [pytest.mark.e2e]

QUEUE = "celery"  # Celery's default queue: a Redis list of JSON messages


def test_countdown_holds_back_only_what_follows_a_recent_start():
    interval = 0.1
    assert countdown(None, 100.0, interval) == 0.0  # never started
    assert countdown(b"99.0", 100.0, interval) == 0.0  # a quiet spell
    assert countdown(b"99.9", 100.0, interval) == pytest.approx(0.0)  # one interval ago
    assert countdown(b"99.97", 100.0, interval) == pytest.approx(0.07)
    assert countdown("100.0", 100.0, interval) == pytest.approx(0.1)
    assert countdown(b"105.0", 100.0, interval) == pytest.approx(0.1)  # clock stepped back
    assert countdown(b"99.97", 100.0, 0.0) == 0.0  # pacing off
    assert countdown(b"garbage", 100.0, interval) == 0.0


@pytest.fixture
def queue(broker, settings):
    """The broker's Redis, emptied, with a pacing interval long enough to observe."""
    settings.PROJECTION_TRIGGER_INTERVAL = 0.5
    client = redis.Redis.from_url(broker.url)
    client.flushdb()
    return client


def messages(client: redis.Redis) -> list[tuple[list[str], datetime | None]]:
    """Each queued catch-up's projections and ETA, oldest first."""
    found = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        assert message["headers"]["task"] == "projections.catch_up"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        eta = message["headers"]["eta"]
        found.append((args, datetime.fromisoformat(eta) if eta else None))
    return found


def test_a_quiet_projection_is_triggered_at_once_with_one_message(queue):
    trigger_projections()

    assert messages(queue) == [(list(PROJECTORS), None)]


def test_a_pending_catch_up_covers_the_next_commands(queue):
    trigger_projections()
    trigger_projections()
    trigger_projections()

    assert len(messages(queue)) == 1


def test_a_trigger_soon_after_a_catch_up_started_is_held_back(queue, event_store, db):
    trigger_projections()
    queue.delete(QUEUE)
    tasks.catch_up_projection(*PROJECTORS)  # as the worker does: clears the flags
    assert not any(queue.exists(PENDING_KEY.format(name)) for name in PROJECTORS)
    started = float(queue.get(STARTED_KEY.format("order_history")))

    trigger_projections()

    [(names, eta)] = messages(queue)
    assert names == list(PROJECTORS)
    assert eta is not None
    assert eta.timestamp() == pytest.approx(started + 0.5, abs=0.05)


def test_a_trigger_after_a_quiet_interval_is_not_held_back(queue, event_store, db):
    tasks.catch_up_projection(*PROJECTORS)
    long_ago = repr(time.time() - 10)
    for name in PROJECTORS:
        queue.set(STARTED_KEY.format(name), long_ago)

    trigger_projections()

    assert messages(queue) == [(list(PROJECTORS), None)]


def test_a_worker_runs_held_back_catch_ups_without_a_sweep(
    broker, event_store, transactional_db, tmp_path, settings, http_as, staff, customer
):
    """No beat here: what reaches the read model came through the paced messages."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the worker shares the test database: needs DATABASE_URL=postgres")
    settings.PROJECTION_TRIGGER_INTERVAL = 0.5
    env = app_env(database=connection.settings_dict, broker_url=broker.url,
                  SECRET_KEY="e2e-test-secret-key", PROJECTION_SWEEP_SECONDS="3600")
    services = Services(tmp_path, env)
    staff_http, john_http = http_as(staff), http_as(customer)
    try:
        services.worker()
        response = staff_http.post(
            "/api/commands/products/",
            {"sku": "MUG-1", "name": "Blue mug", "price": "2.50", "stock": 100},
        )
        assert response.status == 201, response.body
        product_id = response.body["product_id"]
        orders = []
        for _ in range(5):  # back to back: all but the first are held back
            response = john_http.post(
                "/api/commands/orders/",
                {"lines": [{"product_id": product_id, "quantity": 1}],
                 "shipping_address": "12 Harbour Road, Bristol"},
            )
            assert response.status == 201, response.body
            orders.append(response.body)

        history = john_http.read_after("/api/queries/orders/", orders[-1]["position"])

        assert history.status == 200, history.body
        assert {row["order_id"] for row in history.body["results"]} == {
            order["order_id"] for order in orders
        }
        catalog = staff_http.read_after("/api/queries/products/", orders[-1]["position"])
        assert catalog.status == 200, catalog.body
        [product] = catalog.body["results"]
        assert (product["product_id"], product["stock_available"]) == (product_id, 95)
    finally:
        services.stop_all()
