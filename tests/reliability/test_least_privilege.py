"""The whole shop under a PostgreSQL role that may only read and append the event log.

The role has SELECT and INSERT on the events table (and on the snapshots table), and
nothing more there: no UPDATE, no DELETE, no TRUNCATE, not its owner. It owns the
shop's other tables (as the role that runs ``migrate`` would), so it can rebuild read
models. The event store's tables were created beforehand by their owner, so the app
runs with ``CREATE_TABLE=no``. Under that role: every command over HTTP (keyed and
not, replays included), a Celery worker and beat projecting them, the idempotency
cleanup task, catch-up, rebuild, verify and status. If any code updated or deleted a
row of the log, PostgreSQL would refuse it and this test would fail.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from django.conf import settings
from django.db import connection, connections

from tests.support.processes import ROOT, Services, app_env, database_url, wait_until
from tests.support.readside import wait_caught_up

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
]

LOG_TABLES = ("shop_events", "shop_snapshots")


def sql(statement: str, params=(), *, alias: str = "default") -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def own_the_tables(role: str, alias: str) -> None:
    """Let ``role`` connect to the database behind ``alias``, create schemas there, and
    own its tables, but only read and append the log's."""
    database = connection.ops.quote_name(connections[alias].settings_dict["NAME"])
    sql(f'GRANT CREATE, CONNECT ON DATABASE {database} TO "{role}"', alias=alias)
    sql(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"', alias=alias)
    tables = [name for (name,) in sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", alias=alias)]
    for table in tables:
        if table in LOG_TABLES:
            sql(f'GRANT SELECT, INSERT ON {table} TO "{role}"', alias=alias)
        else:
            sql(f'ALTER TABLE {table} OWNER TO "{role}"', alias=alias)


@pytest.fixture
def app_role(live_db):
    """A login role that owns the shop's tables but may only read and append the log."""
    role = f"shop_app_test_{uuid.uuid4().hex[:8]}"
    # Both databases: the read side's is another one when READ_DATABASE_URL is set.
    aliases = ["default", "read"] if settings.READ_DATABASE_SPLIT else ["default"]
    sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        for alias in aliases:
            own_the_tables(role, alias)
        sql(f'GRANT USAGE ON SEQUENCE shop_events_notification_id_seq TO "{role}"')
        yield role
    finally:
        for alias in aliases:  # ownership and grants are per database
            sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER', alias=alias)
            sql(f'DROP OWNED BY "{role}"', alias=alias)
        sql(f'DROP ROLE "{role}"')


def as_role(role: str, redis_url: str) -> dict[str, str]:
    database = {**connection.settings_dict, "USER": role, "PASSWORD": ""}
    read = {**connections["read"].settings_dict, "USER": role, "PASSWORD": ""}
    return app_env(database=database, broker_url=redis_url, CREATE_TABLE="no",
                   READ_DATABASE_URL=database_url(read))


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


def test_the_shop_runs_with_only_select_and_insert_on_the_log(app_role, redis_server,
                                                             api_users, tmp_path):
    env = as_role(app_role, redis_server.url)
    services = Services(tmp_path, env)
    try:
        web = services.gunicorn(workers=1, threads=4)
        worker = services.worker()
        services.beat(PROJECTION_SWEEP_SECONDS="1")
        staff = {"Authorization": f"Token {api_users['staff'].token}"}
        john = {"Authorization": f"Token {api_users['customer'].token}"}
        with httpx.Client(base_url=web.base_url, timeout=30) as client:

            def post(path, body, headers, status=(200, 201), **extra):
                response = client.post(path, json=body, headers={**headers, **extra})
                assert response.status_code in status, (path, response.text,
                                                        web.log_tail())
                return response.json()

            mug = post("/api/commands/products/", {"sku": "MUG-1", "name": "Mug",
                                                   "price": "9.99", "stock": 10},
                       staff)["product_id"]
            product = f"/api/commands/products/{mug}"
            post(f"{product}/rename", {"name": "Blue mug"}, staff)
            post(f"{product}/reprice", {"price": "12.50"}, staff)
            post(f"{product}/restock", {"quantity": 5}, staff, **{"Idempotency-Key": "r-1"})
            post(f"{product}/restock", {"quantity": 5}, staff, **{"Idempotency-Key": "r-1"})
            line = {"lines": [{"product_id": mug, "quantity": 1}], "shipping_address": "1 St"}
            order = post("/api/commands/orders/", line, john,
                         **{"Idempotency-Key": "o-1"})["order_id"]
            cancelled = post("/api/commands/orders/", line, john)["order_id"]
            post(f"/api/commands/orders/{cancelled}/cancel", {}, john)
            post(f"/api/commands/orders/{cancelled}/cancel", {}, john, status=(409,),
                 **{"Idempotency-Key": "c-1"})  # a refusal, recorded
            shipment = post("/api/commands/shipments/", {"order_id": order, "carrier": "DHL"},
                            staff)["shipment_id"]
            for status in ("dispatched", "in_transit", "delivered"):
                post(f"/api/commands/shipments/{shipment}/status", {"status": status}, staff)
            head = post(f"{product}/restock", {"quantity": 1}, staff)["position"]

            history = client.get("/api/queries/orders/", headers=john,
                                 params={"min_position": head, "wait": 20})
            assert history.status_code == 200, history.text
            assert {o["status"] for o in history.json()["results"]} == {
                "delivered", "cancelled"}
        # Beat's cleanup, by the worker, as on the schedule: age the records first.
        sql("UPDATE shop_idempotency SET created_at = created_at - interval '25 hours'")
        subprocess.run([sys.executable, "-m", "celery", "-A", "shop", "call",
                        "shop.delete_expired_idempotency_records"], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=60)
        wait_until(lambda: any(
            "delete_expired_idempotency_records" in line and "succeeded" in line
            for line in worker.log_path.read_text(errors="replace").splitlines()),
            timeout=30, what="the cleanup task to succeed")
        wait_caught_up(timeout=30)
    finally:
        services.stop_all()
    assert sql("SELECT count(*) FROM shop_idempotency") == [(0,)]
    for command in (["catch_up_projections"], ["rebuild_projections"],
                    ["verify_projections"], ["projection_status"]):
        manage(env, *command)
    # The role really is held to reading and appending.
    for statement in ("UPDATE shop_events SET topic = topic",
                      "DELETE FROM shop_events", "TRUNCATE shop_events",
                      "LOCK TABLE shop_events IN EXCLUSIVE MODE"):
        refused = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", app_role, "-d",
             connection.settings_dict["NAME"], "-v", "ON_ERROR_STOP=1",
             "-c", f"BEGIN; {statement}; ROLLBACK"],
            capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "permission denied" in refused.stderr, (
            statement, refused.stderr)
