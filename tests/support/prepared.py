"""Prepared statements in tests: the ones psycopg has prepared on this thread's read
connection, and a reader racing blue/green rebuilds with its statements prepared."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connections

from projections.registry import get_projector
from projections.shadow import rebuild
from shop.databases import READ
from tests.support.threads import background


def prepared_statements(containing: str, alias: str = READ) -> list[str]:
    """The text of each statement prepared on this thread's connection to ``alias``
    (the read side's, unless told) that contains ``containing``."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements "
                       "WHERE strpos(statement, %s) > 0", [containing])
        return [statement for (statement,) in cursor.fetchall()]


def read_through_rebuilds(
    read: Callable[[], int], rows: int, projection: str, containing: str,
    arrive: Callable[[], object],
) -> tuple[int, list[str], list[str]]:
    """A thread runs ``read`` (how many rows it found; ``rows`` each time)
    ``PREPARE_THRESHOLD`` times and more, so that its statements (those containing
    ``containing``) are prepared on its connection, then in a loop, while this thread
    rebuilds ``projection`` blue/green three times (each swaps its tables for new ones).
    Then ``arrive`` adds a row here and the reader reads once more. Returns that last
    count, and the reader's prepared statements before the swaps and after them."""
    prepared, done, arrived = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []
    after: list = []

    def reading() -> None:
        for _ in range(settings.PREPARE_THRESHOLD + 3):
            assert read() == rows
        before = prepared_statements(containing)
        assert before
        prepared.set()
        while not done.is_set():
            assert read() == rows
        assert arrived.wait(timeout=60)
        after.extend([read(), before, prepared_statements(containing)])

    reader = background(reading, failures, then=prepared.set)
    try:
        assert prepared.wait(timeout=60)
        for _ in range(3):
            rebuild(get_projector(projection), batch_size=2)
    finally:
        done.set()
    arrive()
    arrived.set()
    reader.join(timeout=60)
    assert failures == []
    found, before, still = after
    return found, before, still
