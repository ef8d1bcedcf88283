"""Events and snapshots stored before ``Product`` had a category still load, take
commands and project: the library upcasts them when read (``class_version`` 2 and
``upcast_v1_v2`` on ``Product.Registered`` and on ``Product`` itself, for snapshots).

The rows in ``tests/fixtures/events_v1.json`` were written by the code before the
change (``tests/fixtures/record_events_v1.py``) and are inserted here as stored.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from django.db import connection

from catalog.domain import Product, product_id_for_sku
from catalog.services import product_rename, product_restock
from projections.models import OrderHistory, ProductCatalog
from shop.eventstore import get_app, head_position
from shop.unit_of_work import load
from tests.givens import place, project

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

FIXTURE = Path(__file__).parent.parent / "fixtures" / "events_v1.json"
MUG = product_id_for_sku("MUG-1")  # snapshotted at version 50, 63 events
TEE = product_id_for_sku("TEE-M")  # never snapshotted


def insert_stored_rows(app, *, snapshots: bool) -> dict:
    rows = json.loads(FIXTURE.read_text())
    tables = ["shop_events"] + (["shop_snapshots"] if snapshots else [])
    with app.recorder.datastore.transaction(commit=True) as cursor:
        for table in tables:
            for row in rows[table]:
                row = {**row, "state": base64.b64decode(row["state"])}
                columns = ", ".join(row)
                values = ", ".join(f"%({key})s" for key in row)
                cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})", row)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('shop_events', 'notification_id'),"
            " (SELECT max(notification_id) FROM shop_events))"
        )
    return rows


@pytest.fixture(autouse=True)
def no_projection_trigger(monkeypatch):
    monkeypatch.setattr("projections.tasks.trigger_projections", lambda: None)


def test_the_fixture_holds_version_1_rows_and_a_product_snapshot():
    rows = json.loads(FIXTURE.read_text())
    states = [json.loads(base64.b64decode(r["state"])) for r in rows["shop_events"]]
    registered = [s for r, s in zip(rows["shop_events"], states, strict=True)
                  if r["topic"] == "catalog.domain:Product.Registered"]
    assert len(registered) == 2
    assert all("category" not in s and "class_version" not in s for s in registered)
    [snapshot] = rows["shop_snapshots"]
    state = json.loads(base64.b64decode(snapshot["state"]))
    assert (UUID(snapshot["originator_id"]), snapshot["originator_version"]) == (MUG, 50)
    assert state["topic"] == "catalog.domain:Product"
    assert "category" not in state["state"] and "class_version" not in state["state"]


@pytest.mark.parametrize("snapshots", [True, False], ids=["from-snapshot", "from-events"])
def test_old_products_load_with_an_empty_category(event_store, snapshots):
    insert_stored_rows(event_store, snapshots=snapshots)

    mug = load(MUG, Product)
    tee = load(TEE, Product)

    assert (mug.version, mug.category, mug.price, mug.stock, mug.reserved) == (
        63, "", Decimal("13.00"), 500, 59,
    )
    assert (tee.version, tee.name, tee.category, tee.reserved) == (
        2 + 6, "Logo T-shirt, medium", "", 12,
    )
    if snapshots:
        # The mug really came from its snapshot: its events before 50 are not read.
        recorded = event_store.repository.snapshot_store.get(MUG)
        assert [s.originator_version for s in recorded] == [50]


def test_old_products_take_commands_and_new_events_are_version_2(event_store, make_user):
    insert_stored_rows(event_store, snapshots=True)
    john = make_user("john")

    product_rename(product_id=MUG, name="Blue ceramic mug")
    product_restock(product_id=TEE, quantity=5)
    place(john, (MUG, 2), (TEE, 1))

    mug = load(MUG, Product)
    assert (mug.version, mug.name, mug.reserved, mug.category) == (65, "Blue ceramic mug", 61, "")
    # A product registered now stores its category, in a version 2 event.
    from catalog.services import product_register

    saved = product_register(sku="CUP-1", name="Cup", price=Decimal("3.00"), stock=5,
                             category="Cups")
    assert load(saved.aggregate_id, Product).category == "Cups"
    [stored] = event_store.recorder.select_events(saved.aggregate_id)
    assert json.loads(stored.state)["class_version"] == 2


def test_old_events_project_into_the_read_models(event_store, make_user):
    rows = insert_stored_rows(event_store, snapshots=True)
    assert head_position() == len(rows["shop_events"])

    project()

    catalog = {row.product_id: row for row in ProductCatalog.objects.all()}
    assert {pid: (row.category, row.stock_available, row.version)
            for pid, row in catalog.items()} == {MUG: ("", 441, 63), TEE: ("", 28, 8)}
    assert OrderHistory.objects.count() == 60
    assert OrderHistory.objects.filter(status="cancelled").count() == 1
    names = {line["product_name"] for o in OrderHistory.objects.all() for line in o.lines}
    assert names == {"Blue mug", "Logo T-shirt, medium"}
    # Upcast events render the documents the serializers give for the rows.
    from tests.integration.test_documents import mismatches

    assert mismatches(OrderHistory) == mismatches(ProductCatalog) == []

    # And events appended after the change project on top of them.
    john = make_user("john")
    place(john, (TEE, 1))
    project()
    assert ProductCatalog.objects.get(product_id=TEE).stock_available == 27
    assert get_app().recorder.max_notification_id() == len(rows["shop_events"]) + 2
