"""Operations against gunicorn (two workers) with a real Celery worker and our Redis:
the sales figures after orders and a cancellation, ``/metrics`` summed over the web
workers, and ``/api/health/`` degrading when no worker runs and recovering after."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import Client, request
from tests.support.processes import start_worker, wait_until

pytestmark = [pytest.mark.e2e]

METRICS_TOKEN = "e2e-metrics-token"
LAG_ALERT_SECONDS = 3


@pytest.fixture
def shop(workers, tmp_path, staff, customer):
    """gunicorn with two workers (metrics in multiprocess mode, a small lag alert)."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = workers.gunicorn(
        workers=2, threads=4, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_TOKEN=METRICS_TOKEN, PROJECTION_LAG_ALERT_SECONDS=str(LAG_ALERT_SECONDS),
    )
    return server


def login(base_url: str, username: str) -> Client:
    response = request("POST", f"{base_url}/api/auth/token/",
                       {"username": username, "password": "pass-word-123"})
    assert response.status == 200, response.body
    return Client(base_url, response.body["token"])


def register(staff: Client, sku: str, price: str) -> str:
    response = staff.post("/api/commands/products/",
                          {"sku": sku, "name": sku.title(), "price": price, "stock": 100})
    assert response.status == 201, response.body
    return response.body["product_id"]


def place(john: Client, *lines: tuple[str, int]) -> dict:
    response = john.post("/api/commands/orders/", {
        "lines": [{"product_id": pid, "quantity": qty} for pid, qty in lines],
        "shipping_address": "12 Harbour Road, Bristol",
    })
    assert response.status == 201, response.body
    return response.body


def scrape(base_url: str) -> dict[tuple[str, tuple], float]:
    req = urllib.request.Request(f"{base_url}/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def health(base_url: str, client: Client | None = None) -> dict:
    if client is not None:
        response = client.get("/api/health/")
        assert response.status == 200, response.body
        return response.body
    with urllib.request.urlopen(f"{base_url}/api/health/", timeout=10) as response:
        return json.loads(response.read())


def test_sales_show_the_days_orders_and_cancellations(shop):
    staff, john = login(shop.base_url, "staff"), login(shop.base_url, "john")
    mug, pen = register(staff, "MUG-1", "19.99"), register(staff, "PEN-1", "1.50")
    place(john, (mug, 2), (pen, 4))  # 45.98
    cancelled = place(john, (mug, 1))
    kept = place(john, (pen, 2))  # 3.00
    response = john.post(f"/api/commands/orders/{cancelled['order_id']}/cancel", {})
    assert response.status == 200, response.body
    position = response.body["position"]
    today = datetime.now(UTC).date().isoformat()

    daily = staff.read_after("/api/queries/sales/daily/", position)
    products = staff.read_after(f"/api/queries/sales/products/?from={today}&to={today}",
                                position)

    assert daily.status == 200, daily.body
    assert int(daily.headers["x-projection-position"]) >= position
    assert daily.body["results"] == [
        {"date": today, "orders": 2, "units": 8, "revenue": "48.98", "cancelled": 1}
    ]
    assert products.status == 200, products.body
    assert [(p["sku"], p["units"], p["revenue"]) for p in products.body["results"]] == [
        ("MUG-1", 2, "39.98"), ("PEN-1", 6, "9.00")
    ]
    assert kept["position"] < position
    # customers are refused
    assert john.get("/api/queries/sales/daily/").status == 403


def test_metrics_add_up_over_the_web_workers(shop):
    staff = login(shop.base_url, "staff")
    register(staff, "MUG-1", "19.99")
    before = scrape(shop.base_url)
    key = ("shop_commands_total", (("command", "product-rename"), ("outcome", "ok")))
    product_id = register(staff, "TEA-1", "3.00")
    renames = 24

    def rename(n: int) -> int:
        return Client(shop.base_url, staff.token).post(
            f"/api/commands/products/{product_id}/rename", {"name": f"Tea {n}"}
        ).status

    with ThreadPoolExecutor(8) as pool:  # concurrent: both workers answer some
        assert set(pool.map(rename, range(renames))) == {200}

    # whichever worker answers the scrape, it counts every worker's commands
    for _ in range(6):
        samples = scrape(shop.base_url)
        assert samples.get(key, 0) - before.get(key, 0) == renames
    assert samples[("shop_event_log_head", ())] >= renames
    assert ("shop_projection_lag_seconds", (("projection", "sales"),)) in samples
    # the metrics are closed to anyone else
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{shop.base_url}/metrics", timeout=10)
    assert refused.value.code == 401


def test_health_degrades_without_a_worker_and_recovers_with_one(shop, workers):
    staff, john = login(shop.base_url, "staff"), login(shop.base_url, "john")
    mug = register(staff, "MUG-1", "19.99")
    order = place(john, (mug, 1))
    assert staff.read_after("/api/queries/orders/", order["position"]).status == 200
    wait_until(lambda: all(p["lag_events"] == 0 for p in
                           health(shop.base_url, staff)["projections"]["each"].values()),
               timeout=30, interval=0.2, what="every projection to catch up")
    assert health(shop.base_url) == {"status": "ok"}

    worker = next(p for p in workers.processes if p.name == "worker")
    worker.stop()
    stopped_at = time.monotonic()
    place(john, (mug, 1))  # nothing will project it: the lag starts now

    wait_until(lambda: health(shop.base_url)["status"] == "degraded",
               timeout=LAG_ALERT_SECONDS + 20, interval=0.25, what="health to degrade")
    assert time.monotonic() - stopped_at >= LAG_ALERT_SECONDS  # not before the lag did
    assert health(shop.base_url) == {"status": "degraded"}  # anonymous: the status only
    details = health(shop.base_url, staff)
    assert details["status"] == "degraded" and details["broker"] == "ok"
    assert "order_history" in details["projections"]["lagging"]
    assert details["projections"]["each"]["order_history"]["lag_seconds"] > LAG_ALERT_SECONDS

    start_worker(worker)
    wait_until(lambda: health(shop.base_url)["status"] == "ok", timeout=45, interval=0.25,
               what="health to recover")
    assert health(shop.base_url, staff)["projections"]["lagging"] == []
