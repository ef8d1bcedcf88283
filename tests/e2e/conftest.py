"""End-to-end fixtures: the app over HTTP, a real Celery worker and beat, our own Redis.

The test process serves the app with pytest-django's ``live_server`` (so commands
commit to the test database and enqueue catch-ups on a real broker). A Celery worker
and beat run as subprocesses on the same test database and the same Redis. The Redis
is a private ``redis-server`` on a spare port, started and stopped here, so a test can
take the broker down without touching the machine's shared Redis. The processes and
the HTTP client are the ones in ``tests.support`` (shared with the reliability suite).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.http import Client
from tests.support.processes import RedisServer, Services, app_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; the e2e tests need it (apt install redis)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server, settings) -> Iterator[RedisServer]:
    """Our Redis, running, and this process's command side enqueueing on it."""
    from projections import tasks
    from shop.celery import app

    redis_server.start()
    # The Celery app reads its configuration from Django's settings (namespace CELERY).
    settings.CELERY_BROKER_URL = redis_server.url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert app.conf.broker_url == redis_server.url and not app.conf.task_always_eager
    app.set_current()  # the shop's shared tasks send through the current app
    _forget_broker_connections(app)
    tasks._broker_down_until = 0.0
    yield redis_server
    _forget_broker_connections(app)
    tasks._broker_down_until = 0.0


def _forget_broker_connections(app) -> None:
    # The app caches its connection and producer pools for the broker URL of first use;
    # dropping them makes it look the pools up again (kombu keys them by URL).
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


@pytest.fixture
def workers(broker, event_store, transactional_db, tmp_path) -> Iterator[Services]:
    """A worker and beat (sweep every second) on the test database and our Redis.

    Torn down before the database is flushed, so nothing writes behind the next test.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocesses share the test database: needs DATABASE_URL=postgres")
    env = app_env(database=connection.settings_dict, broker_url=broker.url,
                  SECRET_KEY="e2e-test-secret-key", PROJECTION_SWEEP_SECONDS="1")
    started = Services(tmp_path, env)
    try:
        started.worker()
        started.beat()
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def http_as(live_server) -> Callable[[Any], Client]:
    """An HTTP client for the live server, authenticated with the user's token."""
    from shop.accounts.services import token_issue

    def make(user=None) -> Client:
        token = token_issue(user=user).token if user is not None else None
        return Client(live_server.url, token)

    return make
