"""Fixtures for the abuse tests: a hard time bound that fails a test instead of
letting a hang (the bug some of these tests reproduce) stall the suite."""

from __future__ import annotations

import contextlib
import signal
import time

import pytest

# The live-server tests start gunicorn as the reliability suite does.
from tests.reliability.conftest import live_db, redis_server, services  # noqa: F401


class TookTooLong(AssertionError):
    pass


@contextlib.contextmanager
def answered_within(seconds: float):
    """Fail with ``TookTooLong`` if the block runs longer than ``seconds`` (SIGALRM
    interrupts even a loop that would spin forever), and assert the elapsed time."""

    def expire(signum, frame):
        raise TookTooLong(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds + 1)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"answered after {elapsed:.2f} s, bound {seconds} s"


@pytest.fixture
def within():
    return answered_within
