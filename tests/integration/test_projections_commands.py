"""The operations commands: seed_demo, catch_up_projections, projection_status,
rebuild_projections, run through ``call_command`` on the test database."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from projections.management.commands._common import ProgressPrinter
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.registry import PROJECTORS
from projections.runner import Progress
from shop.eventstore import head_position

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


def test_progress_printer_estimates_the_time_left():
    out = io.StringIO()
    printer = ProgressPrinter(out, "x", tty=False)
    printer.started -= 2.0  # two seconds in, a quarter of the log covered

    text = printer.describe(Progress(position=250, head=1000, processed=100), printer.started + 2)

    assert text == "250/1000 events (25%), 100 applied, 125 events/s, ETA 0:00:06"
