"""Read replicas (READ_REPLICA_URLS) against a real streaming standby.

A throwaway primary holds the read database, a ``pg_basebackup -R`` standby replays it
(``tests/support/replica.py``); the write side is the test database. Each case runs the
shop in a process of its own, configured as in production by its environment, with
projections caught up in-process after each command (no broker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import psycopg
import pytest
from django.db import connection

from tests.support.processes import ROOT, database_url
from tests.support.replica import Cluster, pg_bin

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.skipif(pg_bin() is None, reason="needs PostgreSQL's server binaries"),
]


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def shop_env(cluster, event_store):
    """A fresh read database on the throwaway primary, migrated; the environment of a
    shop process reading it through the standby."""
    name = f"shop_read_{uuid.uuid4().hex[:8]}"
    primary = cluster.primary.url("postgres").replace("postgres://", "postgresql://")
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        READ_DATABASE_URL=cluster.primary.url(name),
        READ_REPLICA_URLS=cluster.standby.url(name),
        READ_REPLICA_MAX_LAG_SECONDS="0.5",
        CELERY_BROKER_URL="",
        SECRET_KEY="replica-tests-secret-key",
        DEBUG="0",
        ALLOW_HTTP="1",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    run(env, "migrate", "--database", "read", "--no-input")
    return env


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


def shell(env: dict[str, str], script: str) -> str:
    return run(env, "shell", "-c", PRELUDE + textwrap.dedent(script))


PRELUDE = textwrap.dedent(
    """
    import time
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient
    from catalog.services import product_restock
    from shop import databases
    from tests.givens import register

    def products(**params):
        response = APIClient().get("/api/queries/products/", params)
        assert response.status_code == 200, response.content[:300]
        stock = {p["sku"]: p["stock_available"] for p in response.json()["results"]}
        return response["X-Read-From"], stock

    def standby(sql):
        with databases.connections["replica1"].cursor() as cursor:
            cursor.execute(sql)
    """
)


def test_queries_read_the_replica_and_still_read_their_writes(shop_env):
    output = shell(shop_env, """
        assert databases.replicas() == ["replica1"]
        mug = register("MUG-1", stock=10)
        for quantity in range(1, 6):
            # The command's projection committed on the primary; the standby may not
            # have replayed it yet: min_position waits until it has.
            position = product_restock(product_id=mug, quantity=quantity).position
            served, stock = products(min_position=position)
            assert served == "replica1", served
            assert stock == {"MUG-1": 10 + quantity * (quantity + 1) // 2}, stock
        health = APIClient()
        health.force_authenticate(User(username="ops", is_staff=True, is_active=True))
        body = health.get("/api/health/").json()
        assert body["replicas"]["replica1"]["serving"] is True, body
        print("replica ok")
    """)
    assert "replica ok" in output


def test_a_lagging_or_stopped_replica_is_skipped_and_the_primary_serves(shop_env, cluster):
    output = shell(shop_env, """
        mug = register("MUG-1", stock=10)
        position = product_restock(product_id=mug, quantity=1).position
        assert products(min_position=position) == ("replica1", {"MUG-1": 11})

        # Replay paused: the standby falls behind by more than the allowed 0.5 s.
        standby("SELECT pg_wal_replay_pause()")
        try:
            position = product_restock(product_id=mug, quantity=1).position
            time.sleep(1.5)
            lag = databases.replica_lags(fresh=True)["replica1"]
            assert lag is not None and lag > 0.5, lag
            assert products(min_position=position) == ("primary", {"MUG-1": 12})
        finally:
            standby("SELECT pg_wal_replay_resume()")
        time.sleep(0.5)
        databases.replica_lags(fresh=True)
        assert products() == ("replica1", {"MUG-1": 12})
        print("lag ok")
    """)
    assert "lag ok" in output

    cluster.stop_server(cluster.standby)
    try:
        output = shell(shop_env, """
            assert databases.replica_lags(fresh=True) == {"replica1": None}
            assert products() == ("primary", {"MUG-1": 12})
            print("down ok")
        """)
        assert "down ok" in output
    finally:
        cluster.start_server(cluster.standby)
