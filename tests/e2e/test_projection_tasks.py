"""The catch-up task on a real Redis: one task follows a busy projection (commands
whose trigger found it queued or running queue nothing), and it yields its worker
process after ``LOOP_SECONDS`` by queueing its successor."""

from __future__ import annotations

import pytest

from projections import tasks
from projections.models import Checkpoint
from shop.eventstore import head_position
from tests.givens import place, register

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "order_history"


@pytest.fixture
def store(broker, event_store, no_projection_trigger, monkeypatch):
    """The pending flags in the test's Redis, ``NAME``'s set as a trigger sets it."""
    monkeypatch.setattr(tasks, "_redis", None)  # a client for this broker
    client = tasks._pending_store()
    assert client is not None
    client.set(tasks.PENDING_KEY.format(NAME), 1)
    yield client
    client.delete(tasks.PENDING_KEY.format(NAME))


def commands_commit_during_catch_ups(monkeypatch, make_user, count: int) -> list[int]:
    """Each of the first ``count`` catch-ups is followed by a command committing (its
    trigger, switched off here, would have found the flag set and queued nothing)."""
    john = make_user("john")
    mug = register("MUG-1", "Blue mug", stock=100)
    real = tasks.catch_up
    applied: list[int] = []

    def catch_up_then_a_command(projector, **kwargs):
        applied.append(real(projector, **kwargs))
        if len(applied) <= count:
            place(john, (mug, 1))
        return applied[-1]

    monkeypatch.setattr(tasks, "catch_up", catch_up_then_a_command)
    return applied


def test_a_command_committed_while_the_task_ran_is_projected_by_the_same_task(
    store, make_user, monkeypatch
):
    applied = commands_commit_during_catch_ups(monkeypatch, make_user, count=2)

    tasks.catch_up_projection(NAME)

    assert len(applied) == 3  # caught up, then again for each command that came
    assert applied[1:] == [1, 1]
    assert Checkpoint.objects.position_of(NAME) == head_position()
    assert store.get(tasks.PENDING_KEY.format(NAME)) is None  # the next trigger queues


def test_a_busy_task_yields_its_process_to_a_successor(store, make_user, monkeypatch):
    applied = commands_commit_during_catch_ups(monkeypatch, make_user, count=5)
    monkeypatch.setattr(tasks, "LOOP_SECONDS", 0.0)
    queued = []
    monkeypatch.setattr(tasks.catch_up_projection, "apply_async",
                        lambda args, **kwargs: queued.append(args))

    tasks.catch_up_projection(NAME)

    assert len(applied) == 1 and queued == [[NAME]]  # one turn, then the next task's
    assert store.get(tasks.PENDING_KEY.format(NAME)) is not None  # held for that task
