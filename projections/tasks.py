"""Celery is an interface here: a task says "catch up projection X", never carries an
event, so a lost, duplicated or late message cannot lose or double-apply anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up

logger = logging.getLogger(__name__)

# After the broker refuses a message, skip enqueueing for a while: the periodic sweep
# catches up, and commands are not slowed by a connection timeout each.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0
_in_process_lock = threading.Lock()


# Coalescing: while a catch-up of a projection is queued and not yet started, further
# commands need not queue another one, because that task will read the log after they
# committed. The key is cleared when the task starts, before it reads the log.
PENDING_KEY = "shop:projections:pending:{}"
PENDING_TTL_SECONDS = 60  # a lost message blocks triggers at most this long (sweep covers)
# When the projection's last catch-up started (a Unix time), for the trigger's pacing.
STARTED_KEY = "shop:projections:started:{}"
_redis: tuple[tuple[int, str], redis.Redis] | None = None


def _pending_store() -> redis.Redis | None:
    """A Redis client for the pending flags, when the broker is Redis: one per process
    and broker URL (a forked child, or settings pointed at another broker, gets its own)."""
    global _redis
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    key = (os.getpid(), url)
    if _redis is None or _redis[0] != key:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        _redis = (key, client)
    return _redis[1]


@shared_task(
    name="projections.catch_up",
    ignore_result=True,
    # The database refusing for a moment (the checkpoint lock held past its timeout by
    # a dying worker, a dropped connection) is retried soon, not left to the sweep.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=5,
    max_retries=10,
)
def catch_up_projection(*names: str) -> int:
    """Catch the named projections up, one after the other; return the events applied.

    A command's trigger sends one message for all the projections it claimed (see
    ``trigger_projections``): each message costs the worker's consumer and the task's
    tracing a few milliseconds of CPU whatever it does, as much as a small catch-up.
    """
    store = _pending_store()
    if store is not None:
        try:
            with store.pipeline(transaction=False) as pipe:
                pipe.delete(*(PENDING_KEY.format(name) for name in names))
                started = repr(time.time())
                for name in names:
                    pipe.set(STARTED_KEY.format(name), started, ex=PENDING_TTL_SECONDS)
                pipe.execute()
        except redis.RedisError:
            logger.warning("Could not clear the pending flags of %s", names, exc_info=True)
    return sum(catch_up(get_projector(name)) for name in names)


@shared_task(name="projections.sweep", ignore_result=True)
def sweep_projections() -> None:
    """The safety net: trigger every projection, whatever messages were lost."""
    for name in PROJECTORS:
        catch_up_projection.delay(name)


def on_events_saved(**_: object) -> None:
    """The receiver of ``shop.eventstore.events_saved`` (connected in ``apps.py``).

    It looks ``trigger_projections`` up at each call, so a test can swap that one
    public function for a no-op.
    """
    trigger_projections()


def countdown(started: bytes | str | None, now: float, interval: float) -> float:
    """How long to hold back a projection's next catch-up (the trigger's pacing).

    A catch-up costs the worker about the same for one command's events as for ten
    (a checkpoint lock, a read of the log, a preload per table, a commit), so under a
    stream of commands one catch-up per command spends the worker's CPU on that fixed
    part. So a catch-up starts at once when the last one started ``interval`` or more
    ago (a quiet shop: no delay at all), else when ``interval`` has passed since it
    did; the commands in between find it pending and add nothing. A command's events
    then reach the read model at most ``interval`` later than they would have.
    """
    if not started or interval <= 0:
        return 0.0
    try:
        elapsed = now - float(started)
    except ValueError:
        return 0.0
    # A clock step backwards (elapsed < 0) waits at most one interval.
    return min(max(interval - elapsed, 0.0), interval)


def trigger_projections() -> None:
    """Called after every command's commit: bring each projection up to date.

    With a broker, enqueue one catch-up message for the projections this command
    claims (paced: see ``countdown``); if the broker is down the command still
    succeeds (its events are durable) and the sweep catches up later. Without a
    broker (the embedded default) catch up in-process, now, so the next read sees
    the write.
    """
    global _broker_down_until
    if not settings.CELERY_BROKER_URL:
        with _in_process_lock:
            for name in PROJECTORS:
                catch_up(get_projector(name))
        return
    if time.monotonic() < _broker_down_until:
        return
    store = _pending_store()
    keys = {name: PENDING_KEY.format(name) for name in PROJECTORS}
    claimed: list[str] = []
    delays: dict[str, float] = {}
    try:
        if store is None:
            claimed = list(keys)
        else:
            # Every projection's flag, and when its last catch-up started, in one
            # round trip to Redis.
            with store.pipeline(transaction=False) as pipe:
                for key in keys.values():
                    pipe.set(key, 1, nx=True, ex=PENDING_TTL_SECONDS)
                pipe.mget([STARTED_KEY.format(name) for name in keys])
                *flags, started = pipe.execute()
            now, interval = time.time(), settings.PROJECTION_TRIGGER_INTERVAL
            # A flag already set: a queued catch-up will see this command's events.
            for name, mine, last in zip(keys, flags, started, strict=True):
                if mine:
                    claimed.append(name)
                    delays[name] = countdown(last, now, interval)
        if claimed:
            # One message for them all; in practice they share one countdown (the
            # same task started them last), else the shortest one serves them all.
            delay = min(delays.get(name, 0.0) for name in claimed)
            catch_up_projection.apply_async(args=claimed, countdown=delay or None,
                                            retry=False)
    except Exception:
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        if store is not None and claimed:
            with contextlib.suppress(redis.RedisError):  # else they expire
                store.delete(*(keys[name] for name in claimed))
        logger.warning(
            "Broker unreachable; projections will catch up on the next sweep.",
            exc_info=True,
        )
        return
