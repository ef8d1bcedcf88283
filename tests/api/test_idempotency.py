"""Idempotency-Key on commands: one execution per user and key, the first outcome
replayed byte for byte, reuse with another request refused, expiry after 24 hours, and
the records kept in a table of their own, never in the event log."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from catalog.domain import Product
from shop import idempotency
from shop.errors import ApplicationError
from shop.eventstore import get_app, head_position
from shop.unit_of_work import load, lock_key
from tests.api.helpers import assert_error
from tests.givens import log_unchanged
from tests.support.readside import event_type_counts

ORDERS = "/api/commands/orders/"


def order_body(product_id, quantity: int = 1) -> dict:
    return {"lines": [{"product_id": str(product_id), "quantity": quantity}],
            "shipping_address": "1 Main St"}


def stock_reserved(product_id) -> int:
    return load(product_id, Product).reserved


def records() -> list[tuple]:
    """Every idempotency record: (id, status, created_at), read from the event store's
    database (on SQLite, its own file)."""
    with get_app().recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT id, status, created_at FROM shop_idempotency ORDER BY id")
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row)
                for row in cursor.fetchall()]


def age_record(user, key: str, hours: float = 25) -> None:
    """The record of ``user``'s ``key`` as if written ``hours`` ago."""
    record_id = idempotency.record_id(user.pk, key)
    with get_app().recorder.datastore.transaction(commit=True) as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("UPDATE shop_idempotency SET created_at = created_at - %s "
                           "WHERE id = %s", [timedelta(hours=hours), record_id])
        else:
            cursor.execute("UPDATE shop_idempotency SET created_at = created_at - ? "
                           "WHERE id = ?", (hours * 3600, record_id.hex))


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
def test_the_record_is_beside_the_log_not_in_it(event_store, customer, client_for,
                                                given_product):
    mug = given_product()
    client_for(customer).post(ORDERS, order_body(mug), format="json",
                              HTTP_IDEMPOTENCY_KEY="k-1")
    # Registered, then the order's two events: no event for the record.
    assert event_type_counts() == {"Product.Registered": 1, "Order.Placed": 1,
                                   "Product.StockReserved": 1}
    assert [(record_id, status) for record_id, status, _ in records()] == [
        (idempotency.record_id(customer.pk, "k-1") if connection.vendor == "postgresql"
         else idempotency.record_id(customer.pk, "k-1").hex, None)]


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
def test_invalid_input_with_a_key_is_not_recorded(event_store, customer, client_for,
                                                  given_product):
    """A request that fails validation never ran: a retry with the key is validated
    again (and can then run)."""
    mug = given_product()
    client = client_for(customer)
    invalid = {"lines": [{"product_id": str(mug), "quantity": 0}], "shipping_address": ""}
    with log_unchanged():
        first = client.post(ORDERS, invalid, format="json", HTTP_IDEMPOTENCY_KEY="bad")
        again = client.post(ORDERS, invalid, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert_error(first, 400, "invalid", {"lines.0.quantity", "shipping_address"})
    assert_error(again, 400, "invalid", {"lines.0.quantity", "shipping_address"})
    assert "Idempotent-Replayed" not in again
    assert records() == []
    fixed = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed


@pytest.mark.django_db
def test_an_unknown_product_in_the_lines_is_not_recorded(event_store, customer, client_for,
                                                         given_product):
    """The 400 for an unknown product comes from the command itself; it is still a 400
    of the input: not recorded, so the same key runs once the product exists."""
    client = client_for(customer)
    body = order_body("6f1c2a8e-3b7d-5e0f-9a41-2c8d7e6b5a10")
    with log_unchanged():
        first = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 400, "invalid", {"lines"})
    assert records() == []


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
def test_a_record_older_than_a_day_is_gone(event_store, customer, client_for, given_product):
    mug = given_product()
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    age_record(customer, "k")  # a day later, the key runs again: a new order
    again = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert again.json()["order_id"] != first.json()["order_id"]
    assert stock_reserved(mug) == 2
    # The new run replaced the expired record: from then on it replays.
    third = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (third.content, third["Idempotent-Replayed"]) == (again.content, "true")


@pytest.mark.django_db
def test_a_rejection_older_than_a_day_is_gone(event_store, customer, staff, client_for,
                                              given_product):
    mug = given_product(stock=1)
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "insufficient_stock")
    client_for(staff).post(f"/api/commands/products/{mug}/restock", {"quantity": 5},
                           format="json")
    age_record(customer, "k")  # a day later, the key runs again: now there is stock
    again = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201, again.content
    assert "Idempotent-Replayed" not in again
    assert stock_reserved(mug) == 2
    replay = client.post(ORDERS, order_body(mug, 2), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (replay.content, replay["Idempotent-Replayed"]) == (again.content, "true")


@pytest.mark.django_db
def test_the_cleanup_deletes_expired_records_only(event_store, customer, client_for,
                                                  given_product):
    mug = given_product(stock=1)
    client = client_for(customer)
    client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="old")
    client.post(ORDERS, order_body(mug, 5), format="json", HTTP_IDEMPOTENCY_KEY="refused")
    client.post(ORDERS, order_body(mug, 5), format="json", HTTP_IDEMPOTENCY_KEY="new")
    assert idempotency.delete_expired() == 0
    age_record(customer, "old")
    age_record(customer, "refused")
    with log_unchanged():  # the log is append-only: only the records' table shrinks
        assert idempotency.delete_expired() == 2
    assert len(records()) == 1
    assert stock_reserved(mug) == 1
    again = client.post(ORDERS, order_body(mug, 5), format="json",
                        HTTP_IDEMPOTENCY_KEY="refused")
    assert_error(again, 409, "insufficient_stock")
    assert "Idempotent-Replayed" not in again  # it ran again


@pytest.mark.django_db
@pytest.mark.undocumented_response  # the injected crash is a 500, which no endpoint documents
def test_a_crash_right_after_the_commit_still_replays(event_store, customer, client_for,
                                                      given_product, monkeypatch):
    from orders.apis import OrderPlaceApi

    mug = given_product()
    client = client_for(customer)
    client.raise_request_exception = False

    def crash(self, saved):
        raise RuntimeError("the process dies right after the commit")

    with monkeypatch.context() as patch:
        patch.setattr(OrderPlaceApi, "success_body", crash)
        crashed = client.post(ORDERS, order_body(mug), format="json",
                              HTTP_IDEMPOTENCY_KEY="k")
    assert crashed.status_code == 500
    assert stock_reserved(mug) == 1  # the order was saved, with its record
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


@pytest.fixture
def held_lock(settings):
    """Hold a writer lock from a session of the test's own (another request still
    running), with the commands' lock wait cut to a second."""
    settings.COMMAND_LOCK_WAIT_SECONDS = 1
    settings_dict = connection.settings_dict
    with psycopg.connect(host=settings_dict["HOST"] or "127.0.0.1",
                         port=settings_dict["PORT"] or 5432,
                         user=settings_dict["USER"] or "postgres",
                         dbname=settings_dict["NAME"]) as other:

        def hold(aggregate_id) -> None:
            other.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(aggregate_id)])

        yield hold
        other.rollback()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_waits_a_bounded_time_for_the_first_then_says_in_use(
    event_store, customer, given_product, no_projection_trigger, held_lock
):
    mug = given_product()
    held_lock(idempotency.record_id(customer.pk, "slow"))  # the first is still running
    client = APIClient()
    client.force_authenticate(customer)
    with log_unchanged():
        duplicate = client.post(ORDERS, order_body(mug), format="json",
                                HTTP_IDEMPOTENCY_KEY="slow")
    assert_error(duplicate, 409, "idempotency_key_in_use")
    assert duplicate["Retry-After"] == "1"
    assert stock_reserved(mug) == 0
    assert records() == []  # a transient answer is never recorded


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_is_transient_and_the_same_key_runs_again(
    event_store, customer, given_product, no_projection_trigger, held_lock
):
    mug = given_product()
    client = APIClient()
    client.force_authenticate(customer)
    held_lock(mug)  # another writer holds the product too long
    with log_unchanged():
        first = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "concurrent_update")
    assert records() == []


@pytest.mark.django_db
def test_a_lost_race_after_every_retry_is_not_recorded(event_store, customer, client_for,
                                                       given_product, monkeypatch):
    from eventsourcing.persistence import IntegrityError

    from shop.unit_of_work import UnitOfWork

    mug = given_product()
    client = client_for(customer)

    def lose(*args, **kwargs):
        raise IntegrityError("another writer saved the product first")

    with monkeypatch.context() as patch:
        patch.setattr(UnitOfWork, "commit", lose)  # every one of the 30 attempts loses
        with log_unchanged():
            lost = client.post(ORDERS, order_body(mug), format="json",
                               HTTP_IDEMPOTENCY_KEY="k")
    assert_error(lost, 409, "concurrent_update")
    assert records() == []
    again = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again


@pytest.mark.django_db
def test_a_user_holding_too_many_keys_is_throttled(event_store, customer, client_for,
                                                   given_product, settings):
    settings.IDEMPOTENCY_MAX_LIVE_KEYS = 2
    mug = given_product()
    client = client_for(customer)
    first = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="1")
    client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="2")
    with log_unchanged():
        third = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="3")
    assert_error(third, 429, "throttled")
    assert third["Retry-After"]
    # Keys already held still replay, and commands without a key still run.
    replay = client.post(ORDERS, order_body(mug), format="json", HTTP_IDEMPOTENCY_KEY="1")
    assert (replay.content, replay["Idempotent-Replayed"]) == (first.content, "true")
    assert client.post(ORDERS, order_body(mug), format="json").status_code == 201


def test_refusals_are_recorded_with_a_small_body_only():
    claim = idempotency.Claim(1, "k", "POST /x 0")
    small = ApplicationError("Not enough stock.")
    small.status, small.code = 409, "insufficient_stock"
    huge = ApplicationError("x" * (idempotency.MAX_BODY_BYTES + 1))
    huge.status, huge.code = 409, "insufficient_stock"
    assert claim.refused(small).status == 409
    assert claim.refused(huge) is None


@pytest.mark.django_db
def test_beat_runs_the_cleanup_task(event_store, customer, client_for, given_product,
                                    settings):
    from shop.celery import app
    from shop.tasks import delete_expired_idempotency_records

    entry = settings.CELERY_BEAT_SCHEDULE["delete-expired-idempotency-records"]
    assert entry["task"] in app.tasks
    client_for(customer).post(ORDERS, order_body(given_product()), format="json",
                              HTTP_IDEMPOTENCY_KEY="k")
    age_record(customer, "k")
    assert delete_expired_idempotency_records.apply().get() == 1
    assert records() == []
