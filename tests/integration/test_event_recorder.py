"""The event store's recorder and the unit of work's transaction on real PostgreSQL: the
library's own contract tests for application recorders (whose inserts run the unit of
work's commit), with ASCII and with non-ASCII states, and the unit of work's
connection, locks, restarts and failures."""

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
from catalog.services import product_register, product_restock
from orders.services import order_place
from shop.eventstore import event_store_env
from shop.recorder import ShopRecorder
from shop.unit_of_work import LockOrder, LockWaitTimeout, UnitOfWork, load, lock_key

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


NON_ASCII = "ünïcødé €✓ 🛒".encode() + bytes(range(256))


class NonAsciiStates(ShopRecorder):
    """The recorder with every state written as non-ASCII bytes (and read back as the
    contract wrote it, once checked): the contract, through the unit of work's insert,
    on states no ASCII test would catch."""

    def insert_events(self, stored_events, **kwargs):
        return super().insert_events([
            StoredEvent(e.originator_id, e.originator_version, e.topic, e.state + NON_ASCII)
            for e in stored_events], **kwargs)

    @staticmethod
    def _stripped(items):
        for item in items:
            assert item.state.endswith(NON_ASCII), item.state
            yield type(item)(**{**item.__dict__, "state": item.state[:-len(NON_ASCII)]})

    def select_events(self, *args, **kwargs):
        return list(self._stripped(super().select_events(*args, **kwargs)))

    def select_notifications(self, *args, **kwargs):
        return list(self._stripped(super().select_notifications(*args, **kwargs)))


@pytest.mark.usefixtures("django_db_setup")
class TestShopRecorderContractNonAscii(ContractRecorder,
                                       ApplicationRecorderTestCase[ShopRecorder]):
    def create_recorder(self) -> ShopRecorder:
        recorder = NonAsciiStates(self.datastore, events_table_name=CONTRACT_TABLE)
        recorder.create_table()
        return recorder


del ApplicationRecorderTestCase, NonInterleavingNotificationIDsBaseCase  # only ours run


# --- the unit of work ------------------------------------------------------------------


def other_session_can_lock(aggregate_id) -> bool:
    """Whether another session could take ``aggregate_id``'s writer lock right now."""
    with psycopg.connect(**event_store_database(), autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(%s)",
                            [lock_key(aggregate_id)]).fetchone()[0]
        if got:
            other.execute("SELECT pg_advisory_unlock(%s)", [lock_key(aggregate_id)])
        return got


def mug(stock: int = 10):
    return product_register(sku=f"MUG-{uuid4().hex[:8]}", name="Mug", price=Decimal("9.99"),
                            stock=stock)


@pytest.mark.django_db(transaction=True)
def test_the_event_store_uses_the_shop_recorder(event_store):
    assert isinstance(event_store.recorder, ShopRecorder)


@pytest.mark.django_db(transaction=True)
def test_the_commit_saves_the_events_and_ends_the_locks_at_once(
    event_store, no_projection_trigger
):
    product = mug()
    with UnitOfWork() as uow:
        uow.lock(product.aggregate_id)
        assert not other_session_can_lock(product.aggregate_id)
        loaded = uow.load(product.aggregate_id, Product)
        loaded.restock(5)
        saved = uow.commit(loaded)
        assert other_session_can_lock(product.aggregate_id)  # the COMMIT let go
    assert load(product.aggregate_id, Product).stock == 15
    assert saved.version == 2 and saved.positions == (saved.position,)


@pytest.mark.django_db(transaction=True)
def test_a_command_takes_one_connection_for_all_its_queries(event_store, monkeypatch,
                                                            no_projection_trigger):
    first, second = mug(), mug()
    pool = event_store.recorder.datastore.pool
    borrowed = []
    getconn = pool.getconn
    monkeypatch.setattr(pool, "getconn", lambda *a, **k: borrowed.append(1) or getconn(*a, **k))
    order_place(customer_id=1, customer="john",
                lines=[(first.aggregate_id, 1), (second.aggregate_id, 2)], shipping_address="x")
    assert len(borrowed) == 1


@pytest.mark.django_db(transaction=True)
def test_a_block_that_raises_rolls_back_and_lets_go(event_store):
    product = mug()
    with pytest.raises(RuntimeError), UnitOfWork() as uow:
        uow.lock(product.aggregate_id)
        uow.load(product.aggregate_id, Product).restock(3)
        raise RuntimeError("the command failed")
    assert other_session_can_lock(product.aggregate_id)
    assert load(product.aggregate_id, Product).stock == 10


@pytest.mark.django_db(transaction=True)
def test_a_failed_commit_ends_the_attempt_and_the_next_one_starts_afresh(event_store):
    product = mug()
    uow = UnitOfWork()
    with pytest.raises(IntegrityError), uow:
        stale = uow.load(product.aggregate_id, Product)  # no lock: a writer gets in
        product_restock(product_id=product.aggregate_id, quantity=1)
        stale.restock(2)
        uow.commit(stale)  # version 2 is taken
    assert other_session_can_lock(product.aggregate_id)
    with uow:  # the retry: a fresh transaction, the winner's state
        uow.lock(product.aggregate_id)
        fresh = uow.load(product.aggregate_id, Product)
        fresh.restock(2)
        assert uow.commit(fresh).version == 3
    assert load(product.aggregate_id, Product).stock == 13


@pytest.mark.django_db(transaction=True)
def test_a_lock_asked_for_out_of_order_restarts_with_every_lock_in_order(event_store):
    low, high = sorted((mug().aggregate_id for _ in range(2)), key=lock_key)
    uow = UnitOfWork()
    with psycopg.connect(**event_store_database(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_key(low)])  # a writer of low
        with pytest.raises(LockOrder), uow:
            uow.lock(high)
            uow.lock(low)  # sorts before high, and is busy: waiting could deadlock
        assert other_session_can_lock(high)
        other.execute("SELECT pg_advisory_unlock_all()")
    with uow:  # the retry's first lock takes both, low first
        uow.lock(high)
        assert not other_session_can_lock(low) and not other_session_can_lock(high)
        uow.lock(low)  # held already


@pytest.mark.django_db(transaction=True)
def test_a_writer_waits_a_bounded_time_for_the_lock(event_store, settings):
    settings.COMMAND_LOCK_WAIT_SECONDS = 0.5
    product = mug()
    with UnitOfWork() as holder:
        holder.lock(product.aggregate_id)
        with pytest.raises(LockWaitTimeout), UnitOfWork() as waiter:
            waiter.lock(product.aggregate_id)
    with UnitOfWork() as uow:  # free again
        uow.lock(product.aggregate_id)


@pytest.mark.django_db(transaction=True)
def test_a_dead_connection_fails_at_once_and_is_not_lent_again(event_store):
    from eventsourcing.persistence import OperationalError

    product = mug()
    with psycopg.connect(**event_store_database(), autocommit=True) as other, \
            pytest.raises(OperationalError), UnitOfWork() as uow:
        uow.lock(product.aggregate_id)
        pid = uow._transaction.conn.info.backend_pid
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        uow.load(product.aggregate_id, Product)
    # Every later command gets a live connection.
    for _ in range(event_store.recorder.datastore.pool.max_size + 1):
        product_restock(product_id=product.aggregate_id, quantity=1)
    assert other_session_can_lock(product.aggregate_id)


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
