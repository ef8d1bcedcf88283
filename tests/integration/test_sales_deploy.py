"""Deploying the sales read model to a shop that already has history: its migration
adds empty tables next to the live ones, and the ordinary catch-up backfills them from
position 0, batch by batch, while the other projections keep following the log."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orders.services import order_cancel
from projections.models import Checkpoint, OrderHistory, SalesDaily
from projections.registry import get_projector
from projections.runner import catch_up, projection_position
from shop.eventstore import head_position
from tests.givens import place, project, register

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_SALES = ("projections", "0004_product_category")


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def test_deploying_sales_backfills_the_history_it_finds(event_store, customer,
                                                       no_projection_trigger):
    # (the old code had no sales projector to trigger: here only what the test
    # projects itself is projected)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("projections")
    migrate([BEFORE_SALES])
    try:
        assert "projections_salesdaily" not in connection.introspection.table_names()
        # the shop runs without a sales projection
        mug = register("MUG-1", "Blue mug", price="19.99")
        kept = place(customer, (mug, 2))
        cancelled = place(customer, (mug, 1))
        order_cancel(order_id=cancelled, user_id=customer.pk, is_staff=False)
    finally:
        migrate(latest)  # the deploy
    # (Today's order history and catalog projectors write columns later migrations
    # added, so they catch up with the history here, after the deploy.)
    project("order_history", "product_catalog")

    assert SalesDaily.objects.count() == 0
    assert not Checkpoint.objects.filter(projection="sales").exists()
    # the others stay live; a new order arrives after the deploy
    later = place(customer, (mug, 3))
    project("order_history")
    assert OrderHistory.objects.filter(pk=later).exists()

    applied = catch_up(get_projector("sales"), batch_size=2)  # ordinary small batches

    assert applied >= 5
    assert projection_position("sales") == head_position()
    [day] = SalesDaily.objects.all()
    assert (day.orders, day.units, day.revenue, day.cancelled) == (2, 5, Decimal("99.95"), 1)
    assert kept != later
