"""Fixtures for the reliability suite: the test database committed for real (so the
gunicorn and Celery subprocesses see it), a private Redis, and the app's processes.

Faults are injected only into what these fixtures started: the test's own
redis-server, gunicorn and Celery processes, and the test database's own sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.processes import RedisServer, Services, app_env


@pytest.fixture
def live_db(transactional_db, event_store):
    """Committed Django rows and an empty event store, both on the test database."""
    return event_store


@dataclass
class ApiUser:
    id: int
    username: str
    token: str
    is_staff: bool


@pytest.fixture
def api_users(live_db):
    """A staff user and three customers, each with an API token."""
    from django.contrib.auth.models import User

    from shop.accounts.services import token_issue

    def make(username: str, is_staff: bool = False) -> ApiUser:
        user = User.objects.create_user(username=username, password="x-pass-word-123",
                                        is_staff=is_staff)
        return ApiUser(user.id, username, token_issue(user=user).token, is_staff)

    staff = make("staff", is_staff=True)
    customers = [make(f"customer{i}") for i in range(3)]
    return {"staff": staff, "customer": customers[0], "customers": customers}


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on a spare port (no persistence), stopped at teardown."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def services(live_db, redis_server, tmp_path):
    """Starts gunicorn / Celery worker / beat pointed at the test database and the
    private Redis; stops every one of them before the database is flushed."""
    from django.db import connection

    manager = Services(tmp_path, app_env(database=connection.settings_dict,
                                         broker_url=redis_server.url))
    yield manager
    manager.stop_all()

