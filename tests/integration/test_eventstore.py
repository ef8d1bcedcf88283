"""The event store's wiring on real PostgreSQL: where events land, their order,
atomic multi-aggregate saves, retries on conflict, snapshots."""

from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connection
from eventsourcing.persistence import IntegrityError

from catalog.domain import DuplicateSku, InsufficientStock, Product
from catalog.services import product_register, product_restock
from orders.domain import Order
from orders.services import order_cancel, order_place
from shipping.domain import InvalidTransition
from shipping.services import shipment_change_status, shipment_create
from shop.errors import InvalidInput, InvalidState, NotFound
from shop.eventstore import head_position
from shop.recorder import PostgresTransaction
from shop.unit_of_work import UnitOfWork, load, retry_on_conflict

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
    # These tests are about the write side; the read side is tested on its own.
    pytest.mark.usefixtures("no_projection_trigger"),
]


def register(sku: str = "MUG-1", stock: int = 10, price: str = "19.99"):
    return product_register(sku=sku, name=sku.title(), price=Decimal(price), stock=stock)


def test_events_land_in_the_test_database(event_store):
    saved = register()

    # Read through the event store's own connection: a read on Django's connection
    # would hold a lock on shop_events until the test's transaction ends.
    with event_store.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT current_database() AS name")
        database = cursor.fetchone()["name"]
        cursor.execute(
            "SELECT originator_id, originator_version, topic, notification_id FROM shop_events"
        )
        rows = cursor.fetchall()
    assert database == connection.settings_dict["NAME"]
    assert database.startswith("test_")
    assert [(str(r["originator_id"]), r["originator_version"], r["notification_id"])
            for r in rows] == [(str(saved.aggregate_id), 1, 1)]
    assert rows[0]["topic"].endswith("Product.Registered")


def test_positions_increase_and_the_last_one_is_the_head(event_store):
    assert head_position() == 0
    first = register("A")
    second = register("B")
    order, _ = order_place(customer_id=1, customer="john", lines=[(first.aggregate_id, 1),
                           (second.aggregate_id, 2)], shipping_address="x")

    assert (first.position, second.position) == (1, 2)
    # Placed + two StockReserved in one save: the order's position is the last of them.
    assert order.position == 5 == head_position()
    assert (order.version, load(first.aggregate_id, Product).version) == (1, 2)
    notifications = event_store.notification_log.select(start=1, limit=10)
    assert [n.id for n in notifications] == [1, 2, 3, 4, 5]


def test_saved_reports_the_primary_aggregate(event_store):
    product = Product.register(sku="A", name="A", price=Decimal("1.00"), stock=1)
    other = Product.register(sku="B", name="B", price=Decimal("1.00"), stock=1)
    with UnitOfWork() as uow:
        saved = uow.commit(product, other, primary=other)
    assert (saved.aggregate_id, saved.version, saved.position) == (other.id, 1, 2)


def test_an_order_with_a_line_lacking_stock_saves_nothing(event_store):
    plenty, scarce = register("A", stock=10), register("B", stock=1)
    head = head_position()

    with pytest.raises(InsufficientStock):
        order_place(customer_id=1, customer="john",
                    lines=[(plenty.aggregate_id, 5), (scarce.aggregate_id, 2)],
                    shipping_address="x")

    assert head_position() == head
    assert load(plenty.aggregate_id, Product).available == 10


def test_one_save_of_several_aggregates_is_atomic(event_store):
    """If one aggregate in a save conflicts, none of the others' events are stored."""
    a, b = register("A"), register("B")
    fresh_a = load(a.aggregate_id, Product)
    stale_b = load(b.aggregate_id, Product)
    product_restock(product_id=b.aggregate_id, quantity=1)  # b moves on
    head = head_position()
    order = Order.place(customer_id=1, customer="john", lines=[], shipping_address="x")
    fresh_a.reserve(order.id, 1)
    stale_b.reserve(order.id, 1)

    with pytest.raises(IntegrityError), UnitOfWork() as uow:
        uow.commit(order, fresh_a, stale_b)

    assert head_position() == head
    assert load(a.aggregate_id, Product).version == 1
    with pytest.raises(NotFound):
        load(order.id, Order)


def test_a_lost_race_is_retried_against_the_winning_state(event_store):
    product_id = register(stock=10).aggregate_id
    attempts = []

    @retry_on_conflict
    def restock_five() -> object:
        attempts.append(1)
        with UnitOfWork() as uow:
            product = uow.load(product_id, Product)
            if len(attempts) == 1:
                product_restock(product_id=product_id, quantity=1)  # another writer wins
            product.restock(5)
            return uow.commit(product)

    saved = restock_five()

    assert len(attempts) == 2
    assert saved.version == 3
    assert load(product_id, Product).stock == 16


def test_after_30_lost_races_the_command_gives_up(event_store):
    product_id = register(stock=10).aggregate_id
    attempts = []

    @retry_on_conflict
    def always_loses() -> object:
        attempts.append(1)
        with UnitOfWork() as uow:
            product = uow.load(product_id, Product)
            product_restock(product_id=product_id, quantity=1)
            product.restock(5)
            return uow.commit(product)

    # The last lost race propagates; the API answers it 409 concurrent_update
    # (tests/api/test_errors.py).
    with pytest.raises(IntegrityError):
        always_loses()

    assert len(attempts) == 30
    assert load(product_id, Product).stock == 10 + 30  # only the winners' restocks


def test_domain_errors_are_not_retried(event_store):
    attempts = []

    @retry_on_conflict
    def rejected() -> None:
        attempts.append(1)
        raise InvalidState()

    with pytest.raises(InvalidState):
        rejected()
    assert len(attempts) == 1


def test_a_product_is_snapshotted_every_50_versions(event_store, monkeypatch):
    product_id = register(stock=0).aggregate_id
    for _ in range(49):
        product_restock(product_id=product_id, quantity=2)
    assert load(product_id, Product).version == 50
    for _ in range(3):
        product_restock(product_id=product_id, quantity=2)

    snapshots = list(event_store.snapshots.get(product_id))
    assert [s.originator_version for s in snapshots] == [50]

    reads = []
    original = PostgresTransaction.select_events

    def spy(self, aggregate_id, after_version):
        reads.append(after_version)
        return original(self, aggregate_id, after_version)

    monkeypatch.setattr(PostgresTransaction, "select_events", spy)
    # A warm process fast-forwards its cached copy (as loaded by the last restock,
    # version 52): it reads only the newer events ...
    product = load(product_id, Product)
    assert reads == [52]
    assert (product.version, product.stock) == (53, 104)
    # ... and a cold one (empty cache) starts from the snapshot, not from version 1.
    event_store.forget_cached_aggregates()
    reads.clear()
    product = load(product_id, Product)
    assert reads == [50]
    assert (product.version, product.stock) == (53, 104)


def test_a_snapshot_is_taken_from_the_product_just_saved(event_store, monkeypatch):
    product_id = register(stock=0).aggregate_id
    for _ in range(48):
        product_restock(product_id=product_id, quantity=2)
    reloads = []
    original_get = event_store.repository.get

    def spy(aggregate_id, *args, **kwargs):
        reloads.append(kwargs.get("version"))
        return original_get(aggregate_id, *args, **kwargs)

    monkeypatch.setattr(event_store.repository, "get", spy)
    product_restock(product_id=product_id, quantity=2)  # version 50

    assert reloads == []  # the library would rebuild version 50 from the store
    [snapshot] = event_store.snapshots.get(product_id)
    rebuilt = Product.Snapshot.take(original_get(product_id, version=50))
    assert (snapshot.originator_version, snapshot.state) == (50, rebuilt.state)


def test_orders_and_shipments_are_not_snapshotted(event_store):
    product_id = register().aggregate_id
    saved, _ = order_place(customer_id=1, customer="john", lines=[(product_id, 1)],
                           shipping_address="x")
    assert list(event_store.snapshots.get(saved.aggregate_id)) == []


def test_rejected_commands_leave_the_head_unchanged(event_store):
    product_id = register(stock=1).aggregate_id
    order, _ = order_place(customer_id=1, customer="john", lines=[(product_id, 1)],
                           shipping_address="x")
    other, _ = order_place(customer_id=1, customer="john",
                           lines=[(register("B").aggregate_id, 1)], shipping_address="x")
    order_cancel(order_id=other.aggregate_id, user_id=1, is_staff=False)
    shipment = shipment_create(order_id=order.aggregate_id, carrier="DHL")
    head = head_position()

    rejections = [
        (DuplicateSku, lambda: register("mug-1")),
        (InsufficientStock, lambda: order_place(customer_id=1, customer="john",
                                                lines=[(product_id, 1)], shipping_address="x")),
        (InvalidInput, lambda: order_place(customer_id=1, customer="john",
                                           lines=[(uuid4(), 1)], shipping_address="x")),
        (InvalidInput, lambda: order_place(customer_id=1, customer="john",
                                           lines=[(product_id, 1), (product_id, 1)],
                                           shipping_address="x")),
        (InvalidState, lambda: order_cancel(order_id=other.aggregate_id, user_id=1,
                                            is_staff=False)),
        (NotFound, lambda: order_cancel(order_id=order.aggregate_id, user_id=2,
                                        is_staff=False)),
        (InvalidState, lambda: shipment_create(order_id=other.aggregate_id, carrier="DHL")),
        (InvalidInput, lambda: shipment_create(order_id=uuid4(), carrier="DHL")),
        (InvalidTransition, lambda: shipment_change_status(
            shipment_id=shipment.aggregate_id, status="created")),
        (NotFound, lambda: product_restock(product_id=uuid4(), quantity=1)),
    ]
    for error, command in rejections:
        with pytest.raises(error):
            command()
        assert head_position() == head, error


def test_the_pool_lends_no_dead_connection_after_every_session_ended(event_store):
    """After PostgreSQL ended every session (a restart, pg_terminate_backend), the
    pool discards each dead connection when it would lend it, without a ping per
    loan, and the next command works: more dead connections than the recorder's 10
    retries, all gone at once."""
    import time

    pool = event_store.recorder.datastore.pool
    borrowed = [pool.getconn() for _ in range(15)]
    pids = [conn.info.backend_pid for conn in borrowed]
    for conn in borrowed:
        pool.putconn(conn)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
            " FROM unnest(%s::int[]) AS pid", [pids]
        )
        assert cursor.fetchone()[0] == len(pids)

    started = time.monotonic()
    saved = register()
    assert load(saved.aggregate_id, Product).sku == "MUG-1"
    assert head_position() == saved.position
    # Well within the 5 s the pool would wait for a connection it could trust.
    assert time.monotonic() - started < 3.0


def test_a_no_op_answers_the_position_of_the_version_it_answers(event_store):
    """A command that changes nothing answers its aggregate's version and that
    version's position, even if another writer appended to the stream since it
    loaded the aggregate (the answer's position must show that version's event)."""
    saved = register()
    product = load(saved.aggregate_id, Product)  # at version 1
    product_restock(product_id=saved.aggregate_id, quantity=5)  # another writer: v2

    with UnitOfWork() as uow:
        answer = uow.commit(product)  # nothing pending

    assert (answer.version, answer.position) == (1, saved.position)
    assert head_position() > saved.position
