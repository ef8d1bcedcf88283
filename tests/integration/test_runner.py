"""The runner: batches, checkpoints, gaps, concurrent workers and parked failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from catalog.domain import Product
from catalog.services import product_rename, product_restock
from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.projectors import ProductCatalogProjector
from projections.registry import PROJECTORS, get_projector
from projections.runner import catch_up, projection_position, rebuild, retry_now
from shop.databases import read_connection
from shop.eventstore import head_position
from tests.givens import place, project, register, rows
from tests.support.processes import read_database_url


def checkpoint(name: str) -> Checkpoint:
    return Checkpoint.objects.get(projection=name)


def read_models() -> dict[str, list[list[dict]]]:
    return {
        name: [rows(model) for model in get_projector(name).models] for name in sorted(PROJECTORS)
    }


def some_history(customer) -> None:
    mug = register("MUG-1", "Blue mug")
    pen = register("PEN-1", "Black pen")
    for quantity in range(1, 6):
        place(customer, (mug, quantity), (pen, 1))
    product_rename(product_id=mug, name="Azure mug")
    product_restock(product_id=pen, quantity=10)


@pytest.mark.django_db
def test_catching_up_twice_changes_nothing(event_store, customer):
    some_history(customer)
    assert project() > 0
    first = read_models()
    positions = {name: checkpoint(name).position for name in PROJECTORS}

    assert project() == 0

    assert read_models() == first
    assert {name: checkpoint(name).position for name in PROJECTORS} == positions
    assert set(positions.values()) == {head_position()}


@pytest.mark.django_db
def test_batch_boundaries_lose_nothing(event_store):
    for i in range(10):
        register(f"SKU-{i}")
    assert head_position() == 10

    applied = catch_up(get_projector("product_catalog"), batch_size=3)

    assert applied == 10
    assert ProductCatalog.objects.count() == 10
    assert projection_position("product_catalog") == 10


@pytest.mark.django_db
def test_irrelevant_events_still_advance_the_position(event_store):
    mug = register("MUG-1")
    project("order_history")
    for _ in range(7):  # the order history does not handle restocks
        product_restock(product_id=mug, quantity=1)

    applied = catch_up(get_projector("order_history"), batch_size=3)

    assert applied == 0
    assert projection_position("order_history") == head_position() == 8


@pytest.mark.django_db
def test_a_burned_notification_id_does_not_stall(event_store, customer):
    mug = register("MUG-1")
    project()
    with event_store.recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('shop_events', 'notification_id'))")
    order_id = place(customer, (mug, 2))
    register("PEN-1")

    project()

    ids = [n.id for n in event_store.recorder.select_notifications(start=1, limit=100)]
    assert ids == [1, 3, 4, 5]  # 2 was burned
    assert OrderHistory.objects.filter(order_id=order_id).exists()
    assert ProductCatalog.objects.count() == 2
    assert ProductCatalog.objects.get(sku="MUG-1").reserved == 2
    for name in PROJECTORS:
        assert projection_position(name) == head_position() == 5


# --- a failing handler parks the projection -------------------------------------------


POISON = 13


def poisoned_restock(self, event):
    if event.quantity == POISON:
        raise RuntimeError("poisoned restock")
    ProductCatalogProjector.restocked(self, event)


def poisoned_restock_in_the_database(self, event):
    """The same failure, raised by the database: it leaves the transaction unusable."""
    if event.quantity == POISON:
        with read_connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0 AS poisoned_restock")
    ProductCatalogProjector.restocked(self, event)


@pytest.mark.django_db
@pytest.mark.parametrize("poisoned", [poisoned_restock, poisoned_restock_in_the_database])
def test_a_failing_event_parks_the_projection_and_resumes_after_the_fix(
    event_store, customer, monkeypatch, poisoned
):
    mug = register("MUG-1", stock=100)  # 1
    product_restock(product_id=mug, quantity=5)  # 2
    product_restock(product_id=mug, quantity=POISON)  # 3: fails
    product_restock(product_id=mug, quantity=7)  # 4
    place(customer, (mug, 1))  # 5: Order.Placed, 6: Product.StockReserved
    monkeypatch.setitem(ProductCatalogProjector.handlers, Product.Restocked, poisoned)

    applied = project("product_catalog")

    parked = checkpoint("product_catalog")
    assert applied == 2  # the events before the failing one are committed
    assert parked.position == 2
    assert (parked.status, parked.error_position, parked.failures) == ("failed", 3, 1)
    expected = "division by zero" if poisoned is poisoned_restock_in_the_database else (
        "poisoned restock"
    )
    assert expected in parked.last_error
    assert parked.retry_at is not None
    assert ProductCatalog.objects.get().stock == 105

    # other projections keep going
    project("order_history")
    assert projection_position("order_history") == head_position() == 6
    assert OrderHistory.objects.count() == 1

    # before its retry time, the parked projection is left alone
    assert project("product_catalog") == 0
    assert checkpoint("product_catalog").position == 2

    # retried without a fix: it fails again, in the same place
    retry_now("product_catalog")
    project("product_catalog")
    assert (checkpoint("product_catalog").position, checkpoint("product_catalog").failures) == (
        2, 2
    )

    # fixed and retried: resumes from the failing event, nothing lost or doubled
    monkeypatch.undo()
    retry_now("product_catalog")
    assert project("product_catalog") == 3  # events 3, 4 and 6 (5 is not the catalog's)

    recovered = checkpoint("product_catalog")
    assert recovered.position == head_position()
    assert (recovered.status, recovered.error_position, recovered.last_error) == ("ok", None, "")
    row = ProductCatalog.objects.get()
    assert (row.stock, row.reserved, row.stock_available) == (125, 1, 124)
    incremental = rows(ProductCatalog)
    rebuild(get_projector("product_catalog"))
    assert rows(ProductCatalog) == incremental


# --- two worker processes at once -------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import django
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    django.setup()
    from projections.registry import PROJECTORS, get_projector
    from projections.runner import catch_up
    time.sleep(max(float(sys.argv[1]) - time.time(), 0))
    print(json.dumps({name: catch_up(get_projector(name), batch_size=4)
                      for name in sorted(PROJECTORS)}))
    """
)


@pytest.mark.django_db(transaction=True)
def test_two_processes_catching_up_at_once_apply_each_event_exactly_once(
    event_store, make_user, no_projection_trigger
):
    # Keep the commands from projecting in-process (no broker in tests): only the
    # two workers below may project.
    customer = make_user("john")
    some_history(customer)
    for i in range(20):
        register(f"SKU-{i}", price=str(Decimal(i + 1)))
    for i in range(0, 20, 2):
        place(customer, (register(f"EXTRA-{i}"), 1))
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "READ_DATABASE_URL": read_database_url(),
        "DEBUG": "1",
        "CELERY_BROKER_URL": "",
        # The tables exist. Two processes creating them at the same instant can fail
        # with "tuple concurrently updated" (a PostgreSQL catalog race).
        "CREATE_TABLE": "no",
    }
    start_at = time.time() + 2

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(start_at)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    concurrent = read_models()
    for name in PROJECTORS:
        assert projection_position(name) == head_position()
        single = rebuild(get_projector(name))  # one run from scratch
        assert results[0][name] + results[1][name] == single  # each event applied once
    assert read_models() == concurrent
    assert connection.vendor == "postgresql"
