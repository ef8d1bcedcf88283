"""``verify_projections``: the drift check replays the log into a shadow, compares it
row by row with the live read model at the live position, names each differing key,
exits 1 if any differ, and changes nothing (no shadow is left behind)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from catalog.services import product_rename
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.shadow import leftover_shadows
from shop.databases import read_connection
from shop.eventstore import head_position
from tests.givens import place, project, register, rows
from tests.support.processes import app_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]


@pytest.fixture
def shop(event_store, make_user, no_projection_trigger):
    john = make_user("john")
    mug = register("MUG-1", "Blue mug")
    pen = register("PEN-1", "Black pen")
    orders = [place(john, (mug, 1), (pen, 2)) for _ in range(12)]
    product_rename(product_id=mug, name="Green mug")
    project()
    return john, mug, pen, orders


def live_state() -> tuple:
    return (
        rows(OrderHistory),
        rows(ProductCatalog),
        list(Checkpoint.objects.order_by("projection").values()),
    )


def run_verify(*names: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_projections", *names, batch_size=4, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def test_a_healthy_read_model_passes_and_nothing_changes(shop):
    before = live_state()

    code, output = run_verify()

    assert code == 0, output
    assert "order_history: 0 differing rows" in output
    assert "product_catalog: 0 differing rows" in output
    assert live_state() == before
    assert leftover_shadows() == []


def test_a_corrupted_row_is_named_and_the_exit_code_is_1(shop):
    _john, mug, pen, orders = shop
    with read_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OrderHistory._meta.db_table} SET status = 'delivered'"
            " WHERE order_id = %s", [orders[3]]
        )
        cursor.execute(
            f"DELETE FROM {ProductCatalog._meta.db_table} WHERE product_id = %s", [pen]
        )
    before = live_state()

    code, output = run_verify()

    assert code == 1, output
    differing = [line for line in output.splitlines() if "=" in line]
    assert differing == [
        f"order_history: {OrderHistory._meta.db_table} order_id={orders[3]}: differs",
        f"product_catalog: {ProductCatalog._meta.db_table} product_id={pen}: "
        "missing from the live model",
    ]
    assert str(mug) not in output
    assert live_state() == before  # the drift is reported, not repaired
    assert leftover_shadows() == []


def test_a_live_model_behind_the_log_is_compared_at_its_own_position(shop):
    john, mug, _pen, _orders = shop
    place(john, (mug, 1))  # not projected: the live model is one order behind
    position = Checkpoint.objects.get(projection="order_history").position
    assert position < head_position()

    code, output = run_verify("order_history")

    assert code == 0, output
    assert f"at position {position}" in output
    assert Checkpoint.objects.get(projection="order_history").position == position


def test_the_command_exits_1_naming_the_key(shop):
    orders = shop[3]
    with read_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OrderHistory._meta.db_table} SET total = total + 1"
            " WHERE order_id = %s", [orders[0]]
        )
    env = app_env(database=connection.settings_dict, broker_url="")
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_projections", "order_history"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"order_id={orders[0]}: differs" in result.stdout


def test_any_projection_rebuilds_blue_green_and_verifies_by_its_own_keys(shop):
    # The sales read model (a composite key per product and day) works as the others.
    from projections.models import SalesProductDaily
    from projections.registry import get_projector
    from projections.shadow import rebuild

    before = rows(SalesProductDaily)
    assert before
    assert rebuild(get_projector("sales"), batch_size=4) > 0
    assert rows(SalesProductDaily) == before
    assert leftover_shadows() == []
    with read_connection.cursor() as cursor:
        cursor.execute(f"UPDATE {SalesProductDaily._meta.db_table} SET units = units + 1")

    code, output = run_verify("sales")

    assert code == 1, output
    day, product = before[0]["day"], before[0]["product_id"]
    assert f"day={day}, product_id={product}: differs" in output


def test_a_shadow_is_resumed_only_by_the_code_that_wrote_it(shop):
    from projections.registry import get_projector
    from projections.shadow import Shadow

    shadow = Shadow(get_projector("order_history"), "rebuild")
    assert shadow.prepare() is False  # a new shadow
    shadow.fill(limit=5, stop=lambda: 10)
    assert shadow.position() == 10
    assert shadow.prepare() is True and shadow.position() == 10  # resumed
    # Written by other projector code (a fix deployed since): started afresh.
    with read_connection.cursor() as cursor:
        cursor.execute(f'COMMENT ON SCHEMA "{shadow.schema}" IS %s', ["projector 0123"])
    assert shadow.prepare() is False and shadow.position() == 0
    shadow.drop()
    assert leftover_shadows() == []


def test_side_by_side_jobs_rebuild_and_verify_every_projection(shop):
    """``--jobs 2``: each projection in a process of its own, same outcome."""
    from projections.models import SalesProductDaily

    before = live_state()[:2], rows(SalesProductDaily)
    out = io.StringIO()
    call_command("rebuild_projections", batch_size=4, jobs=2, stdout=out)
    for name in ("order_history", "product_catalog", "sales", "activity"):
        assert f"{name}: rebuilt," in out.getvalue()
    assert (live_state()[:2], rows(SalesProductDaily)) == before
    assert leftover_shadows() == []

    orders = shop[3]
    with read_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OrderHistory._meta.db_table} SET total = total + 1"
            " WHERE order_id = %s", [orders[0]]
        )
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_projections", batch_size=4, jobs=2, stdout=out)
    assert raised.value.returncode == 1
    assert f"projections_orderhistory order_id={orders[0]}: differs" in out.getvalue()
    assert "product_catalog: 0 differing rows" in out.getvalue()
    assert "sales: 0 differing rows" in out.getvalue()
    assert leftover_shadows() == []


def test_a_replay_lowers_its_own_cpu_priority(shop):
    env = app_env(database=connection.settings_dict, broker_url="",
                  PROJECTION_REBUILD_NICE="7")
    script = (
        "import os; from django.core.management import call_command; "
        "before = os.nice(0); call_command('verify_projections', 'product_catalog'); "
        "print('niceness', before, os.nice(0))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    before, after = result.stdout.split("niceness")[-1].split()
    assert int(after) == min(int(before) + 7, 19)
