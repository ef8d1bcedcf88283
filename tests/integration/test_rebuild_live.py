"""Rebuilding on a live system (blue/green on PostgreSQL): the new read model fills a
shadow beside the live one, in committed batches, and one short transaction swaps it
in. Queries keep the live, complete answer until then; the live projection keeps
following the log meanwhile; commands issued meanwhile are reflected; a rebuild killed
at any point leaves the live read model untouched and resumes when run again.

The rebuild runs as the real management command in its own process. To hold it at
its swap deterministically, the test keeps a share lock on one order-history row: the
swap's ``ALTER TABLE`` waits for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.conf import settings

from catalog.services import product_rename, product_restock
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.registry import get_projector
from projections.runner import catch_up
from projections.shadow import leftover_shadows, verify
from shop.eventstore import head_position
from tests.givens import place, project, register, rows

pytestmark = pytest.mark.django_db(transaction=True)


def database_url(alias: str = "default") -> str:
    """The URL of a test database: the write side's, or the read side's (``read``)."""
    db = settings.DATABASES[alias]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


#: The projections the kill tests rebuild, in the order the command takes them: the
#: order history first, so a kill lands in it before any other has swapped.
KILLED_IN = ("order_history", "product_catalog")


def start_rebuild(*args: str, batch_size: int = 10) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "READ_DATABASE_URL": database_url("read"),
        "DEBUG": "1",
        "CELERY_BROKER_URL": "",
        "PROJECTION_REBUILD_BATCH_SIZE": str(batch_size),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "rebuild_projections", *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def hold_a_row(order_id) -> psycopg.Connection:
    """Another session that keeps one order-history row share-locked until closed."""
    conn = psycopg.connect(database_url("read").replace("postgres://", "postgresql://"))
    conn.execute(
        f"SELECT 1 FROM {OrderHistory._meta.db_table} WHERE order_id = %s FOR SHARE",
        [order_id],
    )
    return conn


def wait_until_blocked_on(
    table: str, rebuild: subprocess.Popen, timeout: float = 30
) -> None:
    """Until a session (the rebuild) waits for a lock to use ``table``."""
    deadline = time.monotonic() + timeout
    # Autocommit: pg_stat_activity is a snapshot taken once per transaction.
    alias = "default" if table.startswith("shop_") else "read"  # the log, or a read model
    with psycopg.connect(
        database_url(alias).replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE %s",
                [f"%{table}%"],
            ).fetchone()[0]
            if waiting:
                return
            if rebuild.poll() is not None:
                raise AssertionError(f"the rebuild ended early: {rebuild.stdout.read()}")
            time.sleep(0.05)
        activity = conn.execute(
            "SELECT state, wait_event_type, wait_event, left(query, 120)"
            " FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
    raise TimeoutError(f"the rebuild never waited for {table}: {activity}")


def history(client) -> tuple[str, list[dict]]:
    response = client.get("/api/queries/orders/", {"page_size": 100})
    assert response.status_code == 200
    return response["X-Projection-Position"], response.json()["results"]


@pytest.fixture
def shop_with_history(event_store, make_user, no_projection_trigger):
    # Nothing projects in-process after a command: only catch_up and the rebuild do.
    john = make_user("john")
    mug = register("MUG-1", "Blue mug")
    orders = [place(john, (mug, 1)) for _ in range(30)]
    project()
    return john, mug, orders


@pytest.fixture
def renamed_history(shop_with_history, client_for):
    """35 more orders, a rename before each (so every batch rewrites lines), projected;
    with the live history as the customer reads it and the read models' rows."""
    john, mug, orders = shop_with_history
    for _ in range(35):
        product_rename(product_id=mug, name=f"Mug {_}")
        place(john, (mug, 1))
    project()
    client = client_for(john)
    old_rows = {model: rows(model) for model in (OrderHistory, ProductCatalog)}
    return client, orders, history(client), old_rows


def test_queries_answer_from_the_old_rows_in_the_middle_of_a_rebuild(
    event_store, make_user, client_for, no_projection_trigger
):
    john = make_user("john")
    mugs = [register(f"MUG-{i}", f"Mug {i}", stock=1000) for i in range(5)]
    for i in range(300):
        place(john, (mugs[i % 5], 1))
    project()
    client = client_for(john)
    before = history(client)

    rebuild = start_rebuild("order_history", batch_size=5)
    # Its first progress line comes after its first batch: the replay has begun.
    first_line = rebuild.stdout.readline()
    assert "order_history" in first_line, first_line
    # Stop it at its next read of the log (a reader of the events table waits).
    blocker = psycopg.connect(database_url().replace("postgres://", "postgresql://"))
    try:
        blocker.execute("LOCK TABLE shop_events IN ACCESS EXCLUSIVE MODE")
        wait_until_blocked_on("shop_events", rebuild)
        assert rebuild.poll() is None, "the rebuild finished before it could be held"
        # Rows of the rebuild so far exist only inside its transaction.
        assert history(client) == before
    finally:
        blocker.close()
    output, _ = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, output
    assert history(client) == before  # the same history, rebuilt


def test_commands_issued_during_a_rebuild_are_reflected_after_it(
    shop_with_history, client_for
):
    john, mug, orders = shop_with_history
    client = client_for(john)
    before = history(client)
    assert len(before[1]) == 30

    lock = hold_a_row(orders[0])
    rebuild = start_rebuild("order_history")
    try:
        wait_until_blocked_on(OrderHistory._meta.db_table, rebuild)
        # Mid-rebuild: the old, complete answer, never an empty or partial one.
        assert history(client) == before
        # Commands keep being accepted while the rebuild runs.
        product_rename(product_id=mug, name="Green mug")
        late_order = place(john, (mug, 2))
        assert history(client) == before
    finally:
        lock.close()
    output, _ = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, output

    position, after = history(client)
    assert int(position) == head_position()  # the rebuild caught up with the commands
    assert [o["order_id"] for o in after][0] == str(late_order)
    assert len(after) == 31
    assert {line["product_name"] for o in after for line in o["lines"]} == {"Green mug"}


def test_a_killed_rebuild_leaves_the_old_read_model_serving(shop_with_history, client_for):
    john, mug, orders = shop_with_history
    client = client_for(john)
    before = history(client)
    old_rows = {model: rows(model) for model in (OrderHistory, ProductCatalog)}
    old_checkpoints = list(Checkpoint.objects.order_by("projection").values())

    lock = hold_a_row(orders[0])
    rebuild = start_rebuild(*KILLED_IN)
    try:
        wait_until_blocked_on(OrderHistory._meta.db_table, rebuild)
        os.killpg(rebuild.pid, signal.SIGKILL)
        rebuild.wait(timeout=30)
    finally:
        lock.close()

    assert history(client) == before
    assert {model: rows(model) for model in old_rows} == old_rows
    assert list(Checkpoint.objects.order_by("projection").values()) == old_checkpoints

    # Simply run it again.
    again = start_rebuild(*KILLED_IN)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    assert {model: rows(model) for model in old_rows} == old_rows
    assert history(client)[1] == before[1]


def progress_position(line: str) -> int:
    """The position in a progress line: "<name>: <position>/<head> events …"."""
    match = re.search(r": (\d+)/(\d+) events", line)
    assert match, line
    return int(match.group(1))


def shadow_position(projection: str) -> int | None:
    """The checkpoint of the shadow a rebuild left behind (None if there is none)."""
    with psycopg.connect(database_url("read").replace("postgres://", "postgresql://")) as conn:
        schema = f"shadow_rebuild_{projection}"
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone()
        if not exists:
            return None
        row = conn.execute(
            f'SELECT position FROM "{schema}".{Checkpoint._meta.db_table}'
            " WHERE projection = %s", [projection]
        ).fetchone()
        return row[0] if row else 0


def test_the_live_projection_keeps_following_the_log_during_a_rebuild(
    shop_with_history, client_for
):
    john, mug, _orders = shop_with_history
    product_restock(product_id=mug, quantity=1000)
    for _ in range(600):
        place(john, (mug, 1))
    project()
    client = client_for(john)
    live = get_projector("order_history")

    rebuild = start_rebuild("order_history", "--interval", "0", batch_size=5)
    first = rebuild.stdout.readline()  # the shadow has committed its first batch
    assert "order_history" in first, first
    waits = []
    try:
        while rebuild.poll() is None and len(waits) < 50:
            started = time.monotonic()
            order = place(john, (mug, 1))
            catch_up(live)  # what a worker does after the command's trigger
            response = client.get(f"/api/queries/orders/{order}")
            assert response.status_code == 200, response.content
            waits.append(time.monotonic() - started)
    finally:
        output, _ = rebuild.communicate(timeout=180)
    assert rebuild.returncode == 0, output
    # The rebuild was still running for these: never waiting for it (the one-transaction
    # rebuild held the checkpoint, and catch-up gave up after its 5 s lock timeout).
    assert len(waits) >= 5, (waits, output)
    assert max(waits) < 2.0, waits

    project()
    assert OrderHistory.objects.count() == 30 + 600 + len(waits)
    assert ProductCatalog.objects.get(product_id=mug).reserved == 30 + 600 + len(waits)
    position, drifts = verify(live)
    assert (position, drifts) == (head_position(), [])
    assert leftover_shadows() == []


@pytest.mark.parametrize("point", ["after the first batch", "in the middle", "at the swap"])
def test_a_rebuild_killed_at_any_point_leaves_the_live_model_and_resumes(
    renamed_history, point
):
    client, orders, before, old_rows = renamed_history
    old_checkpoints = list(Checkpoint.objects.order_by("projection").values())

    lock = hold_a_row(orders[0]) if point == "at the swap" else None
    rebuild = start_rebuild(*KILLED_IN, "--interval", "0", batch_size=5)
    try:
        if point == "at the swap":
            wait_until_blocked_on(OrderHistory._meta.db_table, rebuild)
        else:
            lines = 1 if point == "after the first batch" else 10
            for _ in range(lines):
                assert "order_history" in rebuild.stdout.readline()
        os.killpg(rebuild.pid, signal.SIGKILL)
        rebuild.wait(timeout=30)
    finally:
        if lock is not None:
            lock.close()

    # The live read model never changed, and serves.
    assert history(client) == before
    assert {model: rows(model) for model in old_rows} == old_rows
    assert list(Checkpoint.objects.order_by("projection").values()) == old_checkpoints
    left = shadow_position("order_history")
    assert left is not None and left >= 5  # committed batches to resume from

    again = start_rebuild(*KILLED_IN, "--interval", "0", batch_size=5)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    first = next(line for line in output.splitlines() if line.startswith("order_history:"))
    assert progress_position(first) >= left  # resumed: a restart starts from 0
    assert {model: rows(model) for model in old_rows} == old_rows
    assert history(client)[1] == before[1]
    assert leftover_shadows() == []


def test_side_by_side_replays_stop_when_the_command_is_killed(renamed_history):
    """``--jobs 2``: killing only the command (not its process group) stops its child
    processes too, at their next batch; the live model is as it was and a rerun
    resumes and completes."""
    client, _orders, before, old_rows = renamed_history

    rebuild = start_rebuild("--jobs", "2", "--interval", "0", batch_size=5)
    for _ in range(4):  # a few batches committed by the children
        assert ": " in rebuild.stdout.readline()
    os.kill(rebuild.pid, signal.SIGKILL)
    rebuild.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the children notice at their next batch and exit
        try:
            os.killpg(rebuild.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the replay's children outlived it"
        time.sleep(0.05)

    assert history(client) == before
    assert {model: rows(model) for model in old_rows} == old_rows
    again = start_rebuild("--jobs", "2", "--interval", "0", batch_size=5)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    assert {model: rows(model) for model in old_rows} == old_rows
    assert history(client)[1] == before[1]
    assert leftover_shadows() == []
