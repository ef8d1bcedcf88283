"""Celery is an interface here: a task says "catch up projection X", never carries an
event, so a lost, duplicated or late message cannot lose or double-apply anything.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from django.conf import settings

from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up

logger = logging.getLogger(__name__)

# After the broker refuses a message, skip enqueueing for a while: the periodic sweep
# catches up, and commands are not slowed by a connection timeout each.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0
_in_process_lock = threading.Lock()


@shared_task(name="projections.catch_up", ignore_result=True)
def catch_up_projection(name: str) -> int:
    return catch_up(get_projector(name))


@shared_task(name="projections.sweep", ignore_result=True)
def sweep_projections() -> None:
    """The safety net: trigger every projection, whatever messages were lost."""
    for name in PROJECTORS:
        catch_up_projection.delay(name)


def trigger_projections() -> None:
    """Called after every command's commit: bring each projection up to date.

    With a broker, enqueue one catch-up per projection; if the broker is down the
    command still succeeds (its events are durable) and the sweep catches up later.
    Without a broker (the embedded default) catch up in-process, now, so the next
    read sees the write.
    """
    global _broker_down_until
    if not settings.CELERY_BROKER_URL:
        with _in_process_lock:
            for name in PROJECTORS:
                catch_up(get_projector(name))
        return
    if time.monotonic() < _broker_down_until:
        return
    for name in PROJECTORS:
        try:
            catch_up_projection.apply_async(args=[name], retry=False)
        except Exception:
            _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
            logger.warning(
                "Broker unreachable; projections will catch up on the next sweep.",
                exc_info=True,
            )
            return
