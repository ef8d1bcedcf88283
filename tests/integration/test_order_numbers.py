"""Order numbers: the notification id of each order's ``Order.Placed``, recorded by the
projector, and given to rows projected before numbers existed by migration 0003."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps

from orders.domain import Order
from projections.models import OrderHistory
from shop.databases import read_connection
from shop.eventstore import get_app
from tests.givens import place, project, register

pytestmark = pytest.mark.django_db

migration = importlib.import_module("projections.migrations.0003_order_number")


def placed_ids() -> dict:
    """order id -> the notification id of its Order.Placed, from the log itself."""
    app = get_app()
    return {
        n.originator_id: n.id
        for n in app.recorder.select_notifications(
            start=1, limit=1000, topics=[migration.ORDER_PLACED_TOPIC]
        )
    }


def test_the_migration_topic_is_order_placed():
    from eventsourcing.utils import get_topic

    assert get_topic(Order.Placed) == migration.ORDER_PLACED_TOPIC


def test_each_order_is_numbered_by_its_placement_in_the_log(event_store, customer):
    mug = register("MUG-1")
    orders = [place(customer, (mug, 1)) for _ in range(3)]

    project("order_history")

    numbers = dict(OrderHistory.objects.values_list("order_id", "number"))
    assert numbers == placed_ids()
    assert [numbers[o] for o in orders] == sorted(numbers.values())


def test_the_migration_numbers_rows_projected_before_numbers_existed(
    event_store, customer, monkeypatch
):
    mug = register("MUG-1")
    orders = [place(customer, (mug, 1)) for _ in range(7)]
    project("order_history")
    OrderHistory.objects.update(number=None)  # as rows were before the migration
    monkeypatch.setattr(migration, "PAGE", 3)  # several pages of the log

    migration.number_existing_orders(apps, SimpleNamespace(connection=read_connection))

    numbers = dict(OrderHistory.objects.values_list("order_id", "number"))
    assert set(numbers) == set(orders)
    assert numbers == placed_ids()
