"""Shared fixtures.

The event store writes through its own connection pool, outside pytest-django's
per-test transaction: ``event_store`` points it at the test database and empties its
tables after each test, so every test starts from an empty log.
"""

from __future__ import annotations

import pytest

from shop.eventstore import ShopApplication, get_app, reset_app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the database gets both: the write side's (``default``) and
    the read side's (``read``, a database of its own when READ_DATABASE_URL is set)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_db = {"db", "transactional_db", "live_server"} & set(
            getattr(item, "fixturenames", ())
        )
        if marker is None and not uses_db:
            continue
        kwargs = dict(marker.kwargs) if marker else {}
        kwargs["databases"] = "__all__"
        item.add_marker(pytest.mark.django_db(*(marker.args if marker else ()), **kwargs),
                        append=False)


EVENT_TABLES = ("shop_events", "shop_snapshots", "shop_idempotency")


def truncate_event_tables(app: ShopApplication) -> None:
    """Empty the log through the event store's own connection.

    DELETE, not TRUNCATE: a test's Django connection may still hold its transaction
    open after reading the events table, and TRUNCATE's exclusive lock would wait for
    it forever. Restarting the id sequence keeps positions predictable per test.
    """
    with app.recorder.datastore.transaction(commit=True) as cursor:
        for table in EVENT_TABLES:
            cursor.execute(f"DELETE FROM {table}")
        if app.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('shop_events', 'notification_id'),"
                " 1, false)"
            )
    # Aggregates cached in memory belonged to the log just emptied (product ids are
    # derived from SKUs, so a later test would otherwise load a stale product).
    app.forget_cached_aggregates()
    # So did the search's cached answers about catalog words.
    from projections.search import forget_vocabulary

    forget_vocabulary()


@pytest.fixture
def event_store(django_db_setup):
    """The shop's event store on the test database, empty at the start of the test."""
    reset_app()
    app = get_app()  # creates its tables in the test database
    truncate_event_tables(app)
    yield app
    truncate_event_tables(app)
    reset_app()


@pytest.fixture
def no_projection_trigger(monkeypatch):
    """Commands project nothing after their commit (without a broker they would catch
    up in-process): only what the test runs itself projects."""
    monkeypatch.setattr("projections.tasks.trigger_projections", lambda: None)


@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import User

    def make(username: str, *, is_staff: bool = False) -> User:
        return User.objects.create_user(
            username=username, password="pass-word-123", is_staff=is_staff
        )

    return make


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True)


@pytest.fixture
def customer(make_user):
    return make_user("john")


@pytest.fixture
def other_customer(make_user):
    return make_user("jane")


@pytest.fixture
def client_for():
    """An API client authenticated as the given user (or anonymous with None)."""
    from rest_framework.test import APIClient

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """Each test starts with no request counted against any rate limit."""
    from django.core.cache import caches

    for alias in ("default", "local"):
        caches[alias].clear()
