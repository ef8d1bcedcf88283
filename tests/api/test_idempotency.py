"""Idempotency-Key on commands: one execution per user and key, the first outcome
replayed byte for byte, reuse with another request refused, expiry after 24 hours."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from catalog.domain import Product
from shop import idempotency
from shop.eventstore import head_position, load
from shop.models import IdempotencyRejection
from tests.api.helpers import assert_error
from tests.givens import log_unchanged

ORDERS = "/api/commands/orders/"


def order_body(product_id, quantity: int = 1) -> dict:
    return {"lines": [{"product_id": str(product_id), "quantity": quantity}],
            "shipping_address": "1 Main St"}


def stock_reserved(product_id) -> int:
    return load(product_id, Product).reserved


@pytest.mark.django_db
def test_a_repeat_replays_the_first_answer_and_appends_nothing(
    event_store, customer, client_for, given_product
):
    mug = given_product()
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    assert first["ETag"] == f'"{first.json()["version"]}"'
    assert first.json()["position"] == head_position()
    with log_unchanged():
        again = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again["ETag"] == first["ETag"]
    assert stock_reserved(mug) == 1


@pytest.mark.django_db
def test_a_rejected_command_replays_its_rejection(event_store, customer, staff, client_for,
                                                  given_product):
    mug = given_product(stock=1)
    client = client_for(customer)
    with log_unchanged():  # its outcome is kept beside the log, not in it
        first = client.post(ORDERS, order_body(mug, 2), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "insufficient_stock")
    # Even once the stock is there, the key answers what it answered.
    client_for(staff).post(f"/api/commands/products/{mug}/restock", {"quantity": 5},
                           format="json")
    with log_unchanged():
        again = client.post(ORDERS, order_body(mug, 2), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 409
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert stock_reserved(mug) == 0


@pytest.mark.django_db
def test_invalid_input_with_a_key_appends_nothing_and_replays(event_store, customer,
                                                              client_for, given_product):
    mug = given_product()
    client = client_for(customer)
    invalid = {"lines": [{"product_id": str(mug), "quantity": 0}], "shipping_address": ""}
    with log_unchanged():
        first = client.post(ORDERS, invalid, format="json", HTTP_IDEMPOTENCY_KEY="bad")
        again = client.post(ORDERS, invalid, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert_error(first, 400, "invalid", {"lines.0.quantity", "shipping_address"})
    assert "Idempotent-Replayed" not in first
    assert again.status_code == 400
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_reusing_a_rejected_key_for_another_request_is_refused(
    event_store, customer, client_for, given_product
):
    mug = given_product(stock=1)
    client = client_for(customer)
    with log_unchanged():
        first = client.post(ORDERS, order_body(mug, 2), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
        other = client.post(ORDERS, order_body(mug, 1), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "insufficient_stock")
    assert_error(other, 422, "idempotency_key_reused")
    assert stock_reserved(mug) == 0


@pytest.mark.django_db
def test_reusing_a_key_for_another_request_is_refused(event_store, customer, client_for,
                                                      given_product):
    mug, cup = given_product("MUG-1"), given_product("CUP-1")
    client = client_for(customer)
    client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    with log_unchanged():
        other_body = client.post(ORDERS, order_body(cup), format="json",
                                 HTTP_IDEMPOTENCY_KEY="k")
        other_path = client.post(f"/api/commands/orders/{mug}/cancel", {}, format="json",
                                 HTTP_IDEMPOTENCY_KEY="k")
    assert_error(other_body, 422, "idempotency_key_reused")
    assert_error(other_path, 422, "idempotency_key_reused")
    assert stock_reserved(cup) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_a_400(event_store, customer, client_for, given_product, key):
    mug = given_product()
    with log_unchanged():
        response = client_for(customer).post(ORDERS, order_body(mug), format="json",
                                             HTTP_IDEMPOTENCY_KEY=key)
    assert_error(response, 400, "invalid", {"Idempotency-Key"})


@pytest.mark.django_db
def test_keys_belong_to_a_user(event_store, customer, other_customer, client_for,
                               given_product):
    mug = given_product()
    first = client_for(customer).post(ORDERS, order_body(mug), format="json",
                                      HTTP_IDEMPOTENCY_KEY="shared")
    second = client_for(other_customer).post(ORDERS, order_body(mug), format="json",
                                             HTTP_IDEMPOTENCY_KEY="shared")
    assert first.status_code == second.status_code == 201
    assert first.json()["order_id"] != second.json()["order_id"]
    assert "Idempotent-Replayed" not in second
    assert stock_reserved(mug) == 2


@pytest.mark.django_db
def test_a_record_older_than_a_day_is_gone(event_store, customer, client_for, given_product,
                                           monkeypatch):
    mug = given_product()
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    # A day later (the clock moved on), the key runs again: a new order.
    tomorrow = datetime.now(UTC) + timedelta(hours=24, seconds=1)
    monkeypatch.setattr(idempotency.Record, "live",
                        lambda self, now=None: self.event.timestamp > tomorrow - idempotency.TTL)
    again = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert again.json()["order_id"] != first.json()["order_id"]
    assert stock_reserved(mug) == 2


@pytest.mark.django_db
def test_a_rejection_older_than_a_day_is_gone(event_store, customer, staff, client_for,
                                              given_product, monkeypatch):
    mug = given_product(stock=1)
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "insufficient_stock")
    client_for(staff).post(f"/api/commands/products/{mug}/restock", {"quantity": 5},
                           format="json")
    # A day later (the clock moved on), the key runs again: now there is stock.
    tomorrow = datetime.now(UTC) + timedelta(hours=24, seconds=1)
    monkeypatch.setattr(idempotency.Rejection, "live",
                        lambda self, now=None: self.row.created_at > tomorrow - idempotency.TTL)
    again = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201, again.content
    assert "Idempotent-Replayed" not in again
    assert stock_reserved(mug) == 2
    # From then on the key replays its success.
    replay = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (replay.content, replay["Idempotent-Replayed"]) == (again.content, "true")


@pytest.mark.django_db
def test_an_expired_rejection_is_replaced_by_the_next_run(event_store, customer, client_for,
                                                          given_product):
    mug = given_product(stock=1)
    client = client_for(customer)
    client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    rows = IdempotencyRejection.objects.filter(stream_id=idempotency.record_id(customer.pk, "k"))
    rows.update(created_at=datetime.now(UTC) - timedelta(hours=25))  # recorded a day ago
    with log_unchanged():
        again = client.post(ORDERS, order_body(mug, 2), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
        third = client.post(ORDERS, order_body(mug, 2), format="json",
                            HTTP_IDEMPOTENCY_KEY="k")
    assert_error(again, 409, "insufficient_stock")
    assert "Idempotent-Replayed" not in again  # it ran again
    assert third["Idempotent-Replayed"] == "true"  # and its outcome replaced the old one
    assert rows.get().created_at > datetime.now(UTC) - timedelta(minutes=1)


@pytest.mark.django_db
def test_the_cleanup_deletes_expired_rejections_only(event_store, customer, client_for,
                                                     given_product):
    mug = given_product(stock=1)
    client = client_for(customer)
    for key in ("old", "new"):
        client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY=key)
    old = idempotency.record_id(customer.pk, "old")
    IdempotencyRejection.objects.filter(stream_id=old).update(
        created_at=datetime.now(UTC) - timedelta(hours=25))
    assert idempotency.delete_expired() == 1
    assert set(IdempotencyRejection.objects.values_list("stream_id", flat=True)) == {
        idempotency.record_id(customer.pk, "new")}
    assert idempotency.delete_expired(now=datetime.now(UTC) + timedelta(hours=25)) == 1
    assert not IdempotencyRejection.objects.exists()


@pytest.mark.django_db
def test_the_cleanup_deletes_expired_records_only(event_store, customer, client_for,
                                                  given_product):
    mug = given_product()
    client = client_for(customer)
    client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="old")
    stream = idempotency.record_id(customer.pk, "old")
    assert idempotency.delete_expired() == 0
    assert idempotency.last_record(stream) is not None
    later = datetime.now(UTC) + timedelta(hours=25)
    assert idempotency.delete_expired(now=later) == 1
    assert idempotency.last_record(stream) is None
    # The product's events are untouched; the key runs again as new.
    again = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert stock_reserved(mug) == 2


@pytest.mark.django_db
@pytest.mark.undocumented_response  # the injected crash is a 500, which no endpoint documents
def test_a_crash_right_after_the_save_still_replays(event_store, customer, client_for,
                                                    given_product, monkeypatch):
    mug = given_product()
    client = client_for(customer)
    client.raise_request_exception = False

    def crash(self, position):
        raise RuntimeError("the process dies right after the events are saved")

    with monkeypatch.context() as patch:
        patch.setattr(idempotency.PendingRecord, "recorded", crash)
        crashed = client.post(ORDERS, order_body(mug), format="json",
                              HTTP_IDEMPOTENCY_KEY="k")
    assert crashed.status_code == 500
    assert stock_reserved(mug) == 1  # the order was saved
    with log_unchanged():
        retry = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json()["position"] == head_position()
    assert stock_reserved(mug) == 1


def send_together(customer, body: dict, key: str, n: int = 10) -> list[tuple[int, bytes, str]]:
    """``n`` threads post ``body`` with ``key`` at once; their (status, body, replayed)."""
    start = threading.Barrier(n)
    answers: list[tuple[int, bytes, str]] = []
    lock = threading.Lock()

    def send() -> None:
        try:
            client = APIClient()
            client.force_authenticate(customer)
            start.wait(timeout=30)
            response = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
            with lock:
                answers.append((response.status_code, response.content,
                                response.get("Idempotent-Replayed") or ""))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == n
    return answers


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_requests_with_one_key_execute_once(event_store, customer,
                                                             given_product,
                                                             no_projection_trigger):
    mug = given_product(stock=100)
    answers = send_together(customer, order_body(mug), "once")
    assert {status for status, _, _ in answers} == {201}
    assert len({content for _, content, _ in answers}) == 1
    assert sorted(replayed for _, _, replayed in answers) == [""] + ["true"] * 9
    assert stock_reserved(mug) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_rejected_requests_with_one_key_run_once_and_append_nothing(
    event_store, customer, given_product, no_projection_trigger
):
    mug = given_product(stock=1)
    with log_unchanged():
        answers = send_together(customer, order_body(mug, 2), "once")
    assert {status for status, _, _ in answers} == {409}
    assert len({content for _, content, _ in answers}) == 1
    assert sorted(replayed for _, _, replayed in answers) == [""] + ["true"] * 9


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_waits_a_bounded_time_for_the_first_then_says_in_use(
    event_store, customer, given_product, no_projection_trigger, monkeypatch
):
    import psycopg

    from shop import eventstore

    monkeypatch.setattr(eventstore, "LOCK_WAIT_SECONDS", 1)
    mug = given_product()
    stream = idempotency.record_id(customer.pk, "slow")
    settings_dict = connection.settings_dict
    # The first request with the key is still running: it holds the key's lock.
    with psycopg.connect(host=settings_dict["HOST"] or "127.0.0.1",
                         port=settings_dict["PORT"] or 5432,
                         user=settings_dict["USER"] or "postgres",
                         dbname=settings_dict["NAME"]) as first:
        first.execute("SELECT pg_advisory_xact_lock(%s)", [eventstore._lock_key(stream)])
        client = APIClient()
        client.force_authenticate(customer)
        with log_unchanged():
            duplicate = client.post(ORDERS, order_body(mug), format="json",
                                    HTTP_IDEMPOTENCY_KEY="slow")
        first.rollback()
    assert_error(duplicate, 409, "idempotency_key_in_use")
    assert duplicate["Retry-After"] == "1"
    assert stock_reserved(mug) == 0


@pytest.mark.django_db
def test_beat_runs_the_cleanup_task(event_store, customer, client_for, given_product,
                                    settings, monkeypatch):
    from shop.celery import app
    from shop.tasks import delete_expired_idempotency_records

    entry = settings.CELERY_BEAT_SCHEDULE["delete-expired-idempotency-records"]
    assert entry["task"] in app.tasks
    client_for(customer).post(ORDERS, order_body(given_product()), format="json",
                              HTTP_IDEMPOTENCY_KEY="k")
    later = datetime.now(UTC) + timedelta(hours=25)
    monkeypatch.setattr(idempotency, "datetime",
                        type("Clock", (), {"now": staticmethod(lambda tz=None: later)}))
    assert delete_expired_idempotency_records.apply().get() == 1
    assert idempotency.last_record(idempotency.record_id(customer.pk, "k")) is None
