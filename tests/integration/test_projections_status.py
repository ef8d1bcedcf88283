"""projection_statuses(): position, head and lag of each projection, and its failure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.domain import Product
from projections.models import Checkpoint
from projections.registry import PROJECTORS
from projections.runner import Projector, handles
from projections.status import error_summary, projection_statuses
from tests.givens import register


class RegisteredSkus(Projector):
    """A test projector that only counts registrations (keeps no table)."""

    name = "test_registered_skus"
    seen: list[str] = []  # noqa: RUF012

    @handles(Product.Registered)
    def registered(self, event) -> None:
        type(self).seen.append(event.sku)


@pytest.fixture
def only_test_projector(monkeypatch):
    for name in list(PROJECTORS):
        monkeypatch.delitem(PROJECTORS, name)
    monkeypatch.setitem(PROJECTORS, RegisteredSkus.name, RegisteredSkus)
    RegisteredSkus.seen = []


def register_many(n: int) -> None:
    for i in range(n):
        register(f"SKU-{i}", f"Thing {i}", price="1.00", stock=1)


@pytest.mark.django_db
def test_an_empty_log_has_no_lag(event_store, only_test_projector):
    [status] = projection_statuses()
    assert status.name == RegisteredSkus.name
    assert (status.position, status.head, status.lag_events) == (0, 0, 0)
    assert status.lag_seconds == 0.0
    assert status.status == "ok"
    assert status.last_error == ""


@pytest.mark.django_db
def test_lag_counts_every_event_after_the_checkpoint(event_store, only_test_projector):
    register_many(3)
    head = event_store.recorder.max_notification_id()
    Checkpoint.objects.create(projection=RegisteredSkus.name, position=head - 2)

    [status] = projection_statuses()

    assert status.head == head
    assert status.position == head - 2
    assert status.lag_events == 2
    assert status.lag_seconds is not None and 0 <= status.lag_seconds < 60


@pytest.mark.django_db
def test_lag_seconds_is_the_age_of_the_oldest_unprocessed_event(
    event_store, only_test_projector, monkeypatch
):
    register_many(1)
    later = timezone.now() + timedelta(minutes=10)
    monkeypatch.setattr("projections.status.timezone.now", lambda: later)

    [status] = projection_statuses()

    assert 599 <= status.lag_seconds <= 660


@pytest.mark.django_db
def test_a_failed_projection_shows_its_error(event_store, only_test_projector):
    register_many(2)
    Checkpoint.objects.create(
        projection=RegisteredSkus.name,
        position=1,
        status=Checkpoint.FAILED,
        error_position=2,
        failures=3,
        last_error='Traceback (most recent call last):\n  File "x.py"\nValueError: boom\n',
    )

    [status] = projection_statuses()

    assert status.status == "failed"
    assert status.last_error == "ValueError: boom"
    assert status.error_position == 2
    assert status.failures == 3
    assert "Traceback" in status.traceback


def test_error_summary_takes_the_exception_line():
    assert error_summary("") == ""
    assert error_summary("Traceback:\n  at\nKeyError: 'x'\n\n") == "KeyError: 'x'"
