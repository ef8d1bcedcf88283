"""The embedded default: SQLite for Django and the event store, projections in-process.

These run the real project in subprocesses with no DATABASE_URL-PostgreSQL and no
broker, the way `./dev serve` runs it, so the suite covers the SQLite paths too (the
tracking recorder's contract, the rename UPDATE written in SQLite's JSON functions,
read-your-writes without Celery).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings

CHECK = textwrap.dedent(
    """
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    from catalog.domain import product_id_for_sku
    from catalog.services import product_rename
    from projections.models import OrderHistory
    from shop.eventstore import get_app, head_position

    assert get_app().env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite"
    john = User.objects.get(username="john")
    client = APIClient()
    client.force_authenticate(john)

    # A rename shows in every past order at once: the projections ran in-process
    # when the command committed, so the next read sees it without any wait.
    mug = product_id_for_sku("MUG-1")
    saved = product_rename(product_id=mug, name="Sky blue mug")
    response = client.get("/api/queries/orders/", {"page_size": 100})
    assert response.status_code == 200, response.content[:300]
    assert int(response["X-Projection-Position"]) == head_position() == saved.position
    names = {
        line["product_name"]
        for order in response.json()["results"]
        for line in order["lines"]
        if line["product_id"] == str(mug)
    }
    assert names == {"Sky blue mug"}, names
    stale = [
        o.order_id for o in OrderHistory.objects.all()
        for line in o.lines
        if line["product_id"] == str(mug) and line["product_name"] != "Sky blue mug"
    ]
    assert stale == [], stale

    # Idempotency-Key, If-Match and the records' cleanup work on SQLite too.
    from uuid import uuid4

    from shop import idempotency

    body = {"lines": [{"product_id": str(mug), "quantity": 1}], "shipping_address": "1 St"}
    first = client.post("/api/commands/orders/", body, format="json",
                        HTTP_IDEMPOTENCY_KEY="sqlite-1")
    head = head_position()
    again = client.post("/api/commands/orders/", body, format="json",
                        HTTP_IDEMPOTENCY_KEY="sqlite-1")
    assert first.status_code == 201, first.content
    assert (again.content, again["Idempotent-Replayed"]) == (first.content, "true")
    assert first.json()["position"] == head == head_position()
    staff = User.objects.filter(is_staff=True).first()
    client.force_authenticate(staff)
    stale = client.post(f"/api/commands/products/{mug}/restock", {"quantity": 1},
                        format="json", HTTP_IF_MATCH='"1"')
    assert stale.status_code == 412, stale.content
    unknown = f"/api/commands/orders/{uuid4()}/cancel"
    refused = client.post(unknown, {}, format="json", HTTP_IDEMPOTENCY_KEY="sqlite-2")
    replay = client.post(unknown, {}, format="json", HTTP_IDEMPOTENCY_KEY="sqlite-2")
    assert refused.status_code == 404, refused.content
    assert (replay.content, replay["Idempotent-Replayed"]) == (refused.content, "true")
    assert idempotency.delete_expired() == 0
    with get_app().recorder.datastore.transaction(commit=True) as cursor:  # a day later
        cursor.execute("UPDATE shop_idempotency SET created_at = created_at - 90000")
    assert idempotency.delete_expired() == 2

    # Token authentication's own statement reads what knox's query reads
    # (tests/token_cases.py): SQLite's datetimes and booleans converted as by the ORM.
    from tests.token_cases import token_lookup_mismatches

    mismatches = token_lookup_mismatches()
    assert mismatches == [], mismatches
    print("embedded ok", len(response.json()["results"]))
    """
)


def run(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def embedded_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {
        "DATABASE_URL", "READ_DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(DEBUG="1", ALLOWED_HOSTS="testserver", **extra)
    return env


def test_the_demo_shop_runs_embedded_on_sqlite(tmp_path: Path):
    env = embedded_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    run(["manage.py", "migrate", "--no-input"], env)
    run(["manage.py", "seed_demo"], env)
    assert (tmp_path / "db.events.sqlite3").exists()  # the event store's own file
    assert "embedded ok" in run(["manage.py", "shell", "-c", CHECK], env)
    status = run(["manage.py", "projection_status", "--json"], env)
    assert '"status": "ok"' in status


def test_the_tracking_recorder_passes_the_library_contract_on_sqlite():
    output = run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_tracking_recorder.py"],
        embedded_env(),
    )
    assert "2 passed" in output


SEARCH = textwrap.dedent(
    """
    from decimal import Decimal

    from rest_framework.test import APIClient

    from catalog.services import product_register
    from tests.search_cases import CATALOG, check

    for sku, name, price, stock, category in CATALOG:
        product_register(sku=sku, name=name, price=Decimal(price), stock=stock,
                         category=category)
    client = APIClient()

    def skus(params):
        response = client.get("/api/queries/products/", params)
        assert response.status_code == 200, response.content[:300]
        return [row["sku"] for row in response.json()["results"]]

    failures = check(skus)
    assert failures == [], failures
    assert client.get("/api/queries/products/", {"q": "'\\"*("}).status_code == 200
    from tests.page_cases import cursor_walk_mismatches

    mismatches = cursor_walk_mismatches()
    assert mismatches == [], mismatches
    print("search ok")
    """
)


def test_search_answers_q_usefully_on_sqlite(tmp_path: Path):
    """The same relevance table as on PostgreSQL, through FTS5 (tests/search_cases.py);
    cursor pages read by ``StoredRows`` as DRF reads them from a queryset
    (tests/page_cases.py)."""
    env = embedded_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    run(["manage.py", "migrate", "--no-input"], env)
    assert "search ok" in run(["manage.py", "shell", "-c", SEARCH], env)
