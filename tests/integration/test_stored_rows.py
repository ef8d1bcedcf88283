"""``StoredRows``: a read model's pages by one prepared statement instead of an ORM
query per page, paged by DRF's cursor exactly as the queryset it stands for."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count

from projections.models import Checkpoint, OrderHistory, ProductCatalog
from projections.pages import StoredRows
from tests.givens import place, project, register
from tests.page_cases import cursor_walk_mismatches
from tests.support.prepared import read_through_rebuilds


@pytest.mark.django_db
def test_cursor_pages_equal_the_querysets_forward_and_back_through_ties():
    assert cursor_walk_mismatches() == []


@pytest.mark.django_db
def test_rows_have_the_orms_values_and_the_position_of_their_statement(event_store):
    register("MUG-1", "Blue mug", price="12.50", category="kitchen")
    register("PEN-1", "Red pen", price="1.50", category="office")
    project("product_catalog")
    fields = ("product_id", "sku", "price", "created_at", "stock_available", "document")
    queryset = ProductCatalog.objects.filter(price__gt=1)
    rows = StoredRows.of(queryset, order=("price DESC, product_id", ()),
                         position_of="product_catalog").values(*fields)
    expected = list(queryset.order_by("-price", "product_id").values(*fields))
    position = Checkpoint.objects.position_of("product_catalog")
    assert position > 0
    assert rows[0:10] == [{**row, "read_position": position} for row in expected]
    assert rows[1:2] == [{**expected[1], "read_position": position}]
    assert StoredRows.of(queryset.filter(sku__in=[])).values("sku")[0:5] == []


@pytest.mark.django_db
def test_what_it_would_not_read_as_the_queryset_does_is_refused():
    orders = OrderHistory.objects.all()
    for unsupported in (orders.annotate(n=Count("order_id")), orders.distinct(),
                        orders[:5], orders.union(orders), orders.extra(select={"one": "1"})):
        with pytest.raises(ValueError):
            StoredRows.of(unsupported)
    with pytest.raises(ValueError):
        StoredRows.of(orders).filter(placed_at__lte="2026-01-01")
    with pytest.raises(TypeError):
        StoredRows.of(orders)[3:]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_prepared_history_pages_read_the_tables_a_rebuild_swaps_in(
    event_store, make_user, no_projection_trigger
):
    """A client's history page is one prepared statement on its connection once read
    ``PREPARE_THRESHOLD`` times. While that connection reads the history in a loop,
    blue/green rebuilds swap the order history's table for new ones on another: no page
    fails or misses an order, and the prepared statement then reads the new table (an
    order projected into it is found)."""
    from django.conf import settings
    from rest_framework.test import APIClient

    if settings.PREPARE_THRESHOLD is None:
        pytest.skip("PREPARE_THRESHOLD=off: nothing is prepared")
    customer = make_user("reader")
    mug = register("MUG-1", "Blue mug", price="2.00", stock=100)
    for _ in range(6):
        place(customer, (mug, 1))
    project()

    def history() -> int:
        client = APIClient()
        client.force_authenticate(customer)
        response = client.get("/api/queries/orders/", {"page_size": 100})
        assert response.status_code == 200, response.content
        return len(response.json()["results"])

    def arrive() -> None:
        place(customer, (mug, 1))
        project()

    found, before, still = read_through_rebuilds(
        history, 6, "order_history", "projections_orderhistory", arrive)
    assert found == 7
    assert set(before) <= set(still)  # the same statement, prepared before the swaps
