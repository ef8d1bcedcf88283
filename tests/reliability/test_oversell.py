"""Oversell race: many customers order the last units of one product at once."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest

from tests.givens import project
from tests.support.load import order_rush
from tests.support.readside import (
    assert_accepted_are_durable,
    assert_caught_up_and_healthy,
    event_type_counts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

STOCK = 10
PROCESSES, THREADS, PER_PROCESS = 4, 25, 25


def test_concurrent_orders_never_oversell(services, api_users):
    """Fault: none; the hazard is the race itself.
    Load: 100 orders of 1 unit each on a product with 10 in stock, sent at the same
    instant from 4 OS processes x 25 threads over HTTP to gunicorn (2 processes x 4
    threads).
    Must survive: stock. Exactly 10 orders are accepted (201), the other 90 get 409
    insufficient_stock, nothing answers 5xx; the aggregate and the catalog read model
    both end with 0 available and 10 reserved, and the log holds exactly 10 orders.
    """
    from catalog.domain import Product
    from catalog.services import product_register
    from projections.models import OrderHistory, ProductCatalog
    from shop.eventstore import get_app

    product_id = product_register(sku="LAST-1", name="Last units", price=Decimal("9.99"),
                                  stock=STOCK).aggregate_id
    web = services.gunicorn()

    responses, outcomes = order_rush(web.base_url, api_users["customers"], product_id,
                                     processes=PROCESSES, per_process=PER_PROCESS,
                                     threads=THREADS)

    assert outcomes == {(201, None): STOCK, (409, "insufficient_stock"): 90}, (
        outcomes, web.log_tail())

    accepted = [r for r in responses if r.ok]
    assert_accepted_are_durable(
        accepted,
        lambda resp, event: getattr(event, "order_id", event.originator_id)
        == UUID(resp.body["order_id"]),
    )
    assert event_type_counts()["Order.Placed"] == STOCK
    assert event_type_counts()["Product.StockReserved"] == STOCK

    product = get_app().repository.get(product_id)
    assert isinstance(product, Product)
    assert (product.stock, product.reserved, product.available) == (STOCK, STOCK, 0)

    project()
    assert_caught_up_and_healthy()
    row = ProductCatalog.objects.get(product_id=product_id)
    assert (row.stock, row.reserved, row.stock_available) == (STOCK, STOCK, 0)
    assert OrderHistory.objects.count() == STOCK
    assert sorted(str(o) for o in OrderHistory.objects.values_list("order_id", flat=True)) \
        == sorted(r.body["order_id"] for r in accepted)
