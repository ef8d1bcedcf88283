"""Flash sale: 32 clients in 8 processes order the same product at once, over HTTP.

Writers of one product queue on an advisory lock instead of racing optimistically
(the writer locks of ``shop.unit_of_work``), so a sale that fits the stock never answers 409
concurrent_update, and the stock is still never oversold.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.load import order_rush
from tests.support.readside import event_type_counts

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

PROCESSES, THREADS, PER_PROCESS = 8, 4, 40  # 32 clients, 320 orders


def flash_sale(services, api_users, stock: int) -> tuple[object, dict, object]:
    from catalog.services import product_register

    product_id = product_register(sku="HOT-1", name="Hot deal", price=Decimal("9.99"),
                                  stock=stock).aggregate_id
    web = services.gunicorn(workers=3, threads=8)
    _responses, outcomes = order_rush(web.base_url, api_users["customers"], product_id,
                                      processes=PROCESSES, per_process=PER_PROCESS,
                                      threads=THREADS)
    return product_id, outcomes, web


def test_a_flash_sale_with_enough_stock_accepts_every_order(services, api_users):
    """Fault: none; the hazard is 32 writers of one aggregate at the same instant.
    Must survive: every order is 201 (none concurrent_update), each reserved once."""
    from shop.eventstore import get_app

    orders = PROCESSES * PER_PROCESS
    product_id, outcomes, web = flash_sale(services, api_users, stock=1_000_000)
    assert outcomes == {(201, None): orders}, (outcomes, web.log_tail())
    assert event_type_counts()["Order.Placed"] == orders
    assert get_app().repository.get(product_id).reserved == orders


def test_a_flash_sale_sells_exactly_the_stock(services, api_users):
    """Must survive: with 100 in stock, exactly 100 orders are 201 and every other one
    is 409 insufficient_stock (none concurrent_update); exactly 100 units reserved and
    no rejected order appended anything."""
    from shop.eventstore import get_app

    stock = 100
    product_id, outcomes, web = flash_sale(services, api_users, stock=stock)
    rejected = PROCESSES * PER_PROCESS - stock
    assert outcomes == {(201, None): stock, (409, "insufficient_stock"): rejected}, (
        outcomes, web.log_tail())
    counts = event_type_counts()
    assert counts["Order.Placed"] == counts["Product.StockReserved"] == stock
    product = get_app().repository.get(product_id)
    assert (product.stock, product.reserved, product.available) == (stock, stock, 0)
