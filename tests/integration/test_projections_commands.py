"""The operations commands: seed_demo, catch_up_projections, projection_status,
rebuild_projections, run through ``call_command`` on the test database."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from projections.management.commands._common import ProgressPrinter
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.registry import PROJECTORS
from projections.runner import Progress
from shop.eventstore import head_position
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_builds_a_believable_shop_through_the_commands(event_store):
    out = run("seed_demo", "--force")

    assert "admin / admin-demo-pass" in out
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="john").check_password("demo-pass-123")
    assert ProductCatalog.objects.count() == 10
    johns = list(OrderHistory.objects.filter(customer="john").order_by("placed_at"))
    assert len(johns) == 5
    span = johns[-1].placed_at - johns[0].placed_at
    assert timedelta(days=80) <= span <= timedelta(days=92)
    assert johns[-1].placed_at > timezone.now() - timedelta(days=2)
    statuses = set(OrderHistory.objects.values_list("status", flat=True))
    assert statuses == {"placed", "shipped", "delivered", "cancelled"}
    shipment_statuses = set(
        OrderHistory.objects.exclude(shipment_status=None).values_list(
            "shipment_status", flat=True
        )
    )
    assert shipment_statuses == {"created", "dispatched", "in_transit", "delivered"}
    assert OrderHistory.objects.filter(status="cancelled").count() == 1
    # The rename shows in John's oldest order; the caught-up projections are at the head.
    assert johns[0].lines[0]["sku"] == "MUG-1"
    assert ProductCatalog.objects.get(sku="MUG-1").name == "Blue ceramic mug"
    for name in PROJECTORS:
        assert Checkpoint.objects.get(projection=name).position == head_position()


def test_seed_demo_a_second_time_writes_nothing(event_store):
    run("seed_demo", "--force")
    head = head_position()

    out = run("seed_demo", "--force")

    assert "already present" in out
    assert head_position() == head
    assert User.objects.filter(username="john").count() == 1


def test_catch_up_projections_reports_events_applied(event_store):
    run("seed_demo", "--force")
    Checkpoint.objects.all().delete()
    OrderHistory.objects.all().delete()

    out = run("catch_up_projections", "order_history")

    assert f"order_history: 54 events applied, position {head_position()}" in out
    assert OrderHistory.objects.filter(customer="john").count() == 5


def test_projection_status_prints_a_table_and_json(event_store):
    run("seed_demo", "--force")

    table = run("projection_status")
    data = json.loads(run("projection_status", "--json"))

    assert table.splitlines()[0].split()[:4] == ["PROJECTION", "POSITION", "HEAD", "LAG"]
    assert {row["name"] for row in data} == set(PROJECTORS)
    assert all(row["lag_events"] == 0 and row["status"] == "ok" for row in data)


def test_projection_status_exits_1_when_a_projection_failed(event_store):
    Checkpoint.objects.create(
        projection="order_history",
        status=Checkpoint.FAILED,
        error_position=7,
        last_error="Traceback (most recent call last):\nKeyError: 'x'\n",
    )

    with pytest.raises(CommandError) as raised:
        run("projection_status")

    assert raised.value.returncode == 1
    assert "order_history" in str(raised.value)


def test_rebuild_projections_replays_the_log(event_store):
    run("seed_demo", "--force")
    OrderHistory.objects.all().delete()

    out = run("rebuild_projections", "order_history", "--batch-size", "10")

    assert "order_history: rebuilt, 54 events applied" in out
    assert OrderHistory.objects.count() == 9


def test_rebuild_projections_names_the_known_ones_for_an_unknown_name(event_store):
    with pytest.raises(CommandError, match="known: activity, order_history, product_catalog"):
        run("rebuild_projections", "nope")


@pytest.mark.parametrize("command", ["rebuild_projections", "verify_projections"])
@pytest.mark.parametrize("bad", ["0", "-0.5", "1.5", "nan", "half"])
def test_a_duty_cycle_outside_0_to_1_stops_the_replay_saying_so(event_store, command, bad):
    with pytest.raises(CommandError) as raised:
        run(command, "order_history", "--duty-cycle", bad)

    assert str(raised.value) == (
        "Error: argument --duty-cycle: must be a number greater than 0 and at most 1 (the "
        f"fraction of wall time the replay works; 1: no pausing), not {bad!r}"
    )


def test_a_bad_duty_cycle_given_otherwise_stops_the_replay_too(event_store):
    # call_command's keyword arguments skip the option's parsing; the setting too.
    with pytest.raises(CommandError, match="^--duty-cycle: The duty cycle must be a number "
                                           "greater than 0 and at most 1.*not 0"):
        call_command("rebuild_projections", "order_history", duty_cycle=0)
    with override_settings(PROJECTION_REBUILD_DUTY_CYCLE=2.0), pytest.raises(
        CommandError, match="at most 1.*not 2.0"
    ):
        run("verify_projections", "order_history")


def test_a_bad_duty_cycle_setting_stops_the_start_in_a_sentence():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="shop.settings", DEBUG="1",
               PROJECTION_REBUILD_DUTY_CYCLE="0")

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "manage.py: PROJECTION_REBUILD_DUTY_CYCLE must be a number greater than 0 and at "
        "most 1, not '0'."
    )


def test_progress_printer_estimates_the_time_left():
    out = io.StringIO()
    printer = ProgressPrinter(out, "x", tty=False)
    printer.started -= 2.0  # two seconds in, a quarter of the log covered

    text = printer.describe(Progress(position=250, head=1000, processed=100), printer.started + 2)

    assert text == "250/1000 events (25%), 100 applied, 125 events/s, ETA 0:00:06"
