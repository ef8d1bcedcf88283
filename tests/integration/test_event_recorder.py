"""The event store's recorder (``shop.recorder``) on real PostgreSQL: the library's own
contract tests for application recorders, and the writers' locks it holds for
``exclusive()``."""

from __future__ import annotations

import threading
import unittest
from decimal import Decimal
from uuid import uuid4

import psycopg
import pytest
from django.db import connection
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
)

from catalog.domain import Product
from catalog.services import product_register
from orders.services import order_place
from shop import eventstore
from shop.eventstore import LockWaitTimeout, event_store_env, exclusive, load
from shop.recorder import ShopRecorder

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
)

CONTRACT_TABLE = "contract_events"


def event_store_database() -> dict[str, str]:
    """Where the event store writes (the test database), as ``event_store_env`` says."""
    env = event_store_env()
    return {"dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"],
            "port": env["POSTGRES_PORT"], "user": env["POSTGRES_USER"],
            "password": env["POSTGRES_PASSWORD"]}


def contract_datastore() -> PostgresDatastore:
    return PostgresDatastore(**event_store_database(), pool_size=4, max_overflow=20)


class ContractRecorder(unittest.TestCase):
    """Each test gets a fresh table in the test database (the library's own tests use
    a database of their own)."""

    datastore: PostgresDatastore

    def setUp(self) -> None:
        self.datastore = contract_datastore()
        self.drop_table()

    def tearDown(self) -> None:
        self.drop_table()
        self.datastore.close()

    def drop_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {CONTRACT_TABLE}")

    def create_recorder(self) -> ShopRecorder:
        recorder = ShopRecorder(self.datastore, events_table_name=CONTRACT_TABLE)
        recorder.create_table()
        return recorder


@pytest.mark.usefixtures("django_db_setup")
class TestShopRecorderContract(ContractRecorder, ApplicationRecorderTestCase[ShopRecorder]):
    pass


@pytest.mark.usefixtures("django_db_setup")
class TestShopRecorderNonInterleaving(ContractRecorder, NonInterleavingNotificationIDsBaseCase):
    pass


del ApplicationRecorderTestCase, NonInterleavingNotificationIDsBaseCase  # only ours run


# --- the writers' locks (exclusive) ----------------------------------------------------


def other_session_can_lock(aggregate_id) -> bool:
    """Whether another session could take ``aggregate_id``'s writer lock right now."""
    with psycopg.connect(**event_store_database(), autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(%s)",
                            [eventstore._lock_key(aggregate_id)]).fetchone()[0]
        if got:
            other.execute("SELECT pg_advisory_unlock(%s)", [eventstore._lock_key(aggregate_id)])
        return got


def backend_pid(app) -> int:
    with app.recorder.datastore.get_connection() as conn:
        return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def mug(stock: int = 10):
    return product_register(sku=f"MUG-{uuid4().hex[:8]}", name="Mug", price=Decimal("9.99"),
                            stock=stock)


@pytest.mark.django_db(transaction=True)
def test_the_event_store_uses_the_recorder_with_one_round_trip_inserts(event_store):
    assert isinstance(event_store.recorder, ShopRecorder)


@pytest.mark.django_db(transaction=True)
def test_the_save_in_a_block_commits_its_events_and_ends_the_locks_at_once(
    event_store, no_projection_trigger
):
    product = mug()
    with exclusive(product.aggregate_id):
        assert not other_session_can_lock(product.aggregate_id)
        order_place(customer_id=1, customer="john", lines=[(product.aggregate_id, 1)],
                    shipping_address="x")
        # Still inside the block: the save's COMMIT has already let go.
        assert other_session_can_lock(product.aggregate_id)
        assert load(product.aggregate_id, Product).reserved == 1
    assert other_session_can_lock(product.aggregate_id)


@pytest.mark.django_db(transaction=True)
def test_every_event_store_query_in_a_block_runs_on_the_lock_holders_connection(event_store):
    product = mug()
    with exclusive(product.aggregate_id):
        inside = {backend_pid(event_store) for _ in range(3)}
        with exclusive(uuid4()):  # nested: the same holder, one more lock
            nested = backend_pid(event_store)
            with event_store.recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute("SELECT pg_backend_pid() AS pid")
                in_a_library_transaction = cursor.fetchone()["pid"]
    assert len(inside) == 1
    assert {nested, in_a_library_transaction} == inside


@pytest.mark.django_db(transaction=True)
def test_a_block_that_raises_rolls_back_and_lets_go(event_store):
    product = mug()
    stream = uuid4()
    recorder = event_store.recorder
    with pytest.raises(RuntimeError), exclusive(product.aggregate_id):
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "INSERT INTO shop_events (originator_id, originator_version, topic, state) "
                "VALUES (%s, 1, 'test', '{}')", [stream],
            )
        raise RuntimeError("the command failed")
    assert recorder.select_events(stream) == []
    assert other_session_can_lock(product.aggregate_id)


@pytest.mark.django_db(transaction=True)
def test_a_block_that_saves_nothing_commits_what_it_wrote(event_store):
    product = mug()
    stream = uuid4()
    recorder = event_store.recorder
    recorder.insert_events([StoredEvent(originator_id=stream, originator_version=1,
                                        topic="test", state=b"{}")])
    with exclusive(product.aggregate_id), recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("DELETE FROM shop_events WHERE originator_id = %s", [stream])
    assert recorder.select_events(stream) == []
    assert other_session_can_lock(product.aggregate_id)


@pytest.mark.django_db(transaction=True)
def test_a_block_stays_usable_after_a_failed_save(event_store):
    product = mug()
    recorder = event_store.recorder
    stream = uuid4()
    first = StoredEvent(originator_id=stream, originator_version=1, topic="t", state=b"{}")
    recorder.insert_events([first])
    with exclusive(product.aggregate_id):
        with pytest.raises(IntegrityError):
            recorder.insert_events([first])  # version 1 is taken
        # PostgreSQL ended the transaction's locks with the failed statement; the
        # next save takes them again (ROLLBACK, BEGIN, the locks) before its insert.
        second = StoredEvent(originator_id=stream, originator_version=2, topic="t",
                             state=b"{}")
        assert len(recorder.insert_events([second])) == 1
    assert [e.originator_version for e in recorder.select_events(stream)] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_retry_in_a_nested_block_after_a_failed_save_takes_every_lock_again(event_store):
    outer, inner = mug(), mug()
    recorder = event_store.recorder
    stream = uuid4()
    first = StoredEvent(originator_id=stream, originator_version=1, topic="t", state=b"{}")
    recorder.insert_events([first])
    with exclusive(outer.aggregate_id):  # e.g. an idempotency key's lock
        with pytest.raises(IntegrityError), exclusive(inner.aggregate_id):
            recorder.insert_events([first])
        with exclusive(inner.aggregate_id):  # the command's retry
            assert not other_session_can_lock(outer.aggregate_id)
            assert not other_session_can_lock(inner.aggregate_id)
            second = StoredEvent(originator_id=stream, originator_version=2, topic="t",
                                 state=b"{}")
            recorder.insert_events([second])
            assert other_session_can_lock(outer.aggregate_id)
    assert [e.originator_version for e in recorder.select_events(stream)] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_writer_waits_a_bounded_time_for_the_lock(event_store, monkeypatch):
    monkeypatch.setattr(eventstore, "LOCK_WAIT_SECONDS", 0.5)
    product = mug()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(product.aggregate_id):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(LockWaitTimeout), exclusive(product.aggregate_id):
            pass
    finally:
        release.set()
        holder.join(10)
    with exclusive(product.aggregate_id):  # free again
        pass


@pytest.mark.django_db(transaction=True)
def test_more_writers_than_the_pool_has_connections_all_get_through(
    event_store, no_projection_trigger
):
    product = mug(stock=1000)
    pool = event_store.recorder.datastore.pool
    writers = pool.max_size + 8
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def buy() -> None:
        try:
            start.wait(30)
            order_place(customer_id=1, customer="john", lines=[(product.aggregate_id, 1)],
                        shipping_address="x")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=buy) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:3]
    assert load(product.aggregate_id, Product).reserved == writers
