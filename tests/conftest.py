"""Shared fixtures.

The event store writes through its own connection pool, outside pytest-django's
per-test transaction: ``event_store`` points it at the test database and empties its
tables after each test, so every test starts from an empty log.
"""

from __future__ import annotations

import pytest
from django.db import connection

from shop.eventstore import get_app, reset_app

EVENT_TABLES = ("shop_events", "shop_snapshots")


def _truncate_event_tables(django_db_blocker) -> None:
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"TRUNCATE {', '.join(EVENT_TABLES)} RESTART IDENTITY"  # noqa: S608
                )
        else:
            app = get_app()
            with app.recorder.datastore.transaction(commit=True) as cursor:
                for table in EVENT_TABLES:
                    cursor.execute(f"DELETE FROM {table}")  # noqa: S608


@pytest.fixture
def event_store(django_db_setup, django_db_blocker):
    """The shop's event store on the test database, empty at the start of the test."""
    reset_app()
    app = get_app()  # creates the tables in the test database
    _truncate_event_tables(django_db_blocker)
    yield app
    _truncate_event_tables(django_db_blocker)
    reset_app()
