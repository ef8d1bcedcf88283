"""Work in a background thread of a test, racing the test's own thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def background(work: Callable[[], object], failures: list[BaseException], *,
               then: Callable[[], object] | None = None) -> threading.Thread:
    """Start ``work`` in a thread: any exception it raises is appended to ``failures``
    (for the test to assert empty), ``then`` runs at the end either way (an event that
    tells the test it is done), and the thread closes its own database connections
    (Django's are per thread)."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test, through failures
            failures.append(exc)
        finally:
            if then is not None:
                then()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
