"""The replay's duty cycle on PostgreSQL: a paced rebuild or verify pauses between two
committed batches of its shadow's fill (never inside a transaction, never in the swap)
and builds the very read model an unpaced one does.

The pauses are observed through the pacer's injectable ``sleep`` (recorded, not slept),
not by timing anything."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from projections import shadow
from projections.models import Checkpoint, OrderHistory, ProductCatalog, SalesProductDaily
from projections.registry import get_projector
from projections.shadow import Pacer, leftover_shadows
from shop.databases import read_connection
from shop.eventstore import head_position
from tests.givens import place, project, register, rows

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
    project()
    return john, mug, pen, orders


@pytest.fixture
def pauses(monkeypatch) -> list:
    """What every pacer made from now on asks to sleep: ("sleep", seconds, whether a
    read-side transaction is open), recorded instead of slept; and each pacer's duty."""
    recorded: list = []

    def sleep(seconds: float) -> None:
        recorded.append(("sleep", seconds, read_connection.in_atomic_block))

    def recording_pacer(duty: float) -> Pacer:
        recorded.append(("duty", duty))
        return Pacer(duty, sleep=sleep)

    monkeypatch.setattr(shadow, "Pacer", recording_pacer)
    return recorded


def sleeps(recorded: list) -> list:
    return [entry for entry in recorded if entry[0] == "sleep"]


def read_models() -> tuple:
    return rows(OrderHistory), rows(ProductCatalog), rows(SalesProductDaily)


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_paced_fill_pauses_between_each_two_batches_and_nowhere_else(shop, pauses):
    steps = []

    applied = shadow.rebuild(get_projector("order_history"), batch_size=4, duty_cycle=0.5,
                             progress=steps.append)

    assert applied > 8 and len(steps) >= 3  # several committed batches
    # After every batch of the fill but the last; none in the swap (no progress there).
    assert len(sleeps(pauses)) == len(steps) - 1
    assert all(seconds > 0 and not in_transaction for _, seconds, in_transaction
               in sleeps(pauses))


def test_a_paced_rebuild_builds_what_an_unpaced_one_does_and_its_swap_never_sleeps(
    shop, pauses, monkeypatch
):
    john, mug, pen, _orders = shop
    finish_indexes = shadow.Shadow.finish_indexes
    late_orders = []

    def then_orders_arrive(self) -> None:
        # Between the fill and the swap: the swap applies these under its lock, in
        # several batches of 4, and must not pause meanwhile.
        pauses.append(("swap starts",))
        late_orders.extend(place(john, (mug, 1)) for _ in range(6))
        finish_indexes(self)

    monkeypatch.setattr(shadow.Shadow, "finish_indexes", then_orders_arrive)

    out = run("rebuild_projections", "order_history", "--duty-cycle", "0.5",
              "--batch-size", "4")

    assert "order_history: rebuilt," in out
    swap_starts = pauses.index(("swap starts",))
    assert pauses[0] == ("duty", 0.5)
    assert len(sleeps(pauses[:swap_starts])) >= 2  # between the fill's batches
    assert all(not in_transaction for _, _, in_transaction in sleeps(pauses))
    assert pauses[swap_starts + 1:] == []  # nothing slept in the swap or after it
    # The late orders are in the rebuilt model, and it is at the log's head.
    assert {row["order_id"] for row in rows(OrderHistory)} >= set(late_orders)
    assert Checkpoint.objects.get(projection="order_history").position == head_position()
    monkeypatch.setattr(shadow.Shadow, "finish_indexes", finish_indexes)

    project()  # the other projections see the late orders too
    paced = read_models()
    run("rebuild_projections", "--duty-cycle", "1", "--batch-size", "4")
    assert read_models() == paced  # unpaced: the same rows
    assert ("duty", 1.0) in pauses
    del pauses[:]

    out = run("verify_projections", "--duty-cycle", "0.5", "--batch-size", "4")

    assert "order_history: 0 differing rows" in out
    assert "product_catalog: 0 differing rows" in out
    assert len(sleeps(pauses)) >= 4  # verify's fill is paced as well
    assert leftover_shadows() == []


def test_the_setting_is_the_default_and_the_option_overrides_it(shop, pauses):
    with override_settings(PROJECTION_REBUILD_DUTY_CYCLE=0.25):
        run("verify_projections", "product_catalog", "--batch-size", "4")
        run("rebuild_projections", "product_catalog", "--batch-size", "4",
            "--duty-cycle", "0.75")

    assert [entry for entry in pauses if entry[0] == "duty"] == [("duty", 0.25),
                                                                 ("duty", 0.75)]
    # Duty 0.25 sleeps three times a batch's time, 0.75 a third of it: both slept.
    assert len(sleeps(pauses)) >= 2


def test_side_by_side_replays_are_paced_too(shop):
    """``--jobs 2`` hands the duty cycle to each forked replay (the processes' own
    sleeps are not observable here: the outcome is)."""
    before = read_models()

    out = run("rebuild_projections", "--batch-size", "4", "--jobs", "2",
              "--duty-cycle", "0.5")

    for name in ("order_history", "product_catalog", "sales", "activity"):
        assert f"{name}: rebuilt," in out
    assert read_models() == before
    assert leftover_shadows() == []
