"""Worker killed: projection workers die with kill -9 in the middle of a backlog."""

from __future__ import annotations

import random
import time

import pytest
from celery import Celery

from tests.support.backlog import build_backlog
from tests.support.processes import start_worker, wait_until
from tests.support.readside import (
    assert_caught_up_and_healthy,
    assert_matches_rebuild,
    checkpoint_positions,
    projection_names,
    wait_caught_up,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

BACKLOG_EVENTS = 3000
KILLS = 3


def trigger_all(broker_url: str) -> None:
    """What a command's commit or the beat sweep does: one trigger per projection."""
    # Not the current app: the shop's shared tasks would send through this one after.
    client = Celery("reliability-client", broker=broker_url, set_as_current=False)
    try:
        for name in projection_names():
            client.send_task("projections.catch_up", args=[name])
    finally:
        client.close()


def test_projections_survive_kill_9_of_the_worker(services, redis_server, api_users,
                                                  no_projection_trigger):
    """Fault: the Celery worker's whole process group is killed with SIGKILL 3 times
    while it is projecting (mid-transaction, mid-batch), then restarted.
    Load: a backlog of ~3000 events (orders, renames, reprices, restocks, cancels,
    shipments) appended before the worker starts; batches of 10 so kills land
    mid-stream.
    Must survive: the read models. When the checkpoints reach the head, every
    projection is healthy and its rows equal a rebuild from scratch: no event lost,
    none applied twice.
    """
    # The backlog is built without the in-process catch-up that runs after each commit
    # when the test process itself has no broker (no_projection_trigger): the worker
    # must do all the work.
    customers = [(u.id, u.username) for u in api_users["customers"]]
    head = build_backlog(events=BACKLOG_EVENTS, customers=customers)
    assert checkpoint_positions() == dict.fromkeys(projection_names(), 0)

    worker = services.worker(PROJECTION_BATCH_SIZE="10")
    rng = random.Random()
    kills_mid_stream = 0
    for _ in range(KILLS):
        if min(checkpoint_positions().values()) >= head:
            break  # all projected already: nothing left to interrupt
        trigger_all(redis_server.url)
        # Wait for the worker to commit some progress, let it run a little more ...
        before = checkpoint_positions()
        wait_until(lambda b=before: checkpoint_positions() != b, timeout=30,
                   what="the worker to commit a batch")
        time.sleep(rng.uniform(0.05, 0.4))
        # ... and kill it, children and all, wherever it is.
        worker.kill_group()
        if min(checkpoint_positions().values()) < head:
            kills_mid_stream += 1
        start_worker(worker)

    assert kills_mid_stream >= 1, "every kill came after the backlog was projected"
    trigger_all(redis_server.url)
    wait_caught_up(60, describe=worker.log_tail)
    worker.stop()

    assert_caught_up_and_healthy()
    assert_matches_rebuild()
