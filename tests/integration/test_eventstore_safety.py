"""The event store refuses to run with inserts that skip the table lock (rule 6).

The library reads ``SHOP_POSTGRES_ENABLE_DB_FUNCTIONS`` before the project's own
``POSTGRES_ENABLE_DB_FUNCTIONS=no``, so one stray variable in the environment would
turn the lock off; with it off, an event can commit behind the head a projection has
already read, and be skipped for good.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core import checks
from django.db import connection

from shop.eventstore import (
    ShopApplication,
    UnsafeEventStore,
    event_store_env,
    get_app,
    refuse_unsafe,
    reset_app,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]


@pytest.fixture
def fresh_app():
    reset_app()
    yield
    reset_app()


@pytest.mark.parametrize("value", ["yes", "true", "1"])
def test_the_event_store_refuses_db_functions_from_the_environment(
    fresh_app, monkeypatch, value
):
    monkeypatch.setenv("SHOP_POSTGRES_ENABLE_DB_FUNCTIONS", value)

    with pytest.raises(UnsafeEventStore, match="SHOP_POSTGRES_ENABLE_DB_FUNCTIONS"):
        get_app()
    assert [e.id for e in checks.run_checks(tags=["eventstore"])] == ["shop.E001"]


def test_the_unprefixed_variable_is_overridden_by_the_project(fresh_app, monkeypatch):
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "yes")
    assert get_app().recorder.datastore.enable_db_functions is False
    assert checks.run_checks(tags=["eventstore"]) == []


def test_the_prefixed_variable_fails_the_system_check_of_every_command():
    database = settings.DATABASES["default"]["NAME"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "READ_DATABASE_URL": "",
        "SHOP_POSTGRES_ENABLE_DB_FUNCTIONS": "yes",
        "DEBUG": "1",
        "CELERY_BROKER_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "shop.E001" in result.stderr
    assert "insert lock" in result.stderr


def test_a_recorder_that_inserts_through_db_functions_is_refused(fresh_app):
    # However it came to be configured: the check reads the recorder's own setting.
    app = ShopApplication(env={**event_store_env(), "POSTGRES_ENABLE_DB_FUNCTIONS": "yes"})
    assert app.recorder.datastore.enable_db_functions
    with pytest.raises(UnsafeEventStore):
        refuse_unsafe(app)


def test_the_default_configuration_is_accepted(fresh_app):
    app = get_app()
    assert app.recorder.datastore.enable_db_functions is False
    assert checks.run_checks(tags=["eventstore"]) == []
