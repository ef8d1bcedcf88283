"""A rebuild from scratch yields exactly the rows incremental catch-up produced.

A seeded random mix of commands (some rejected) is projected incrementally, with
catch-ups at random moments and random batch sizes; then each read model is rebuilt
from the log and compared row for row, and checked against the aggregates themselves.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from catalog.domain import Product
from catalog.services import product_rename, product_reprice, product_restock
from orders.domain import Order
from orders.services import order_cancel
from projections.models import OrderHistory, ProductCatalog
from projections.registry import PROJECTORS, get_projector
from projections.runner import projection_position, rebuild
from shipping.domain import STATUSES
from shipping.services import shipment_change_status, shipment_create
from shop.errors import ApplicationError
from shop.eventstore import get_app, head_position
from tests.read_side import place, project, register, rows

pytestmark = pytest.mark.django_db


def read_models() -> dict[str, list[list[dict]]]:
    return {
        name: [rows(model) for model in get_projector(name).models] for name in sorted(PROJECTORS)
    }


def run_random_commands(rng: random.Random, users: list, steps: int) -> int:
    """Run ``steps`` random commands, catching up now and then; return how many failed."""
    products: list = []
    orders: list = []
    shipments: list = []
    failed = 0
    for step in range(steps):
        kind = rng.choices(
            ["register", "rename", "reprice", "restock", "place", "cancel", "ship", "advance"],
            weights=[2, 2, 1, 1, 6, 2, 2, 3],
        )[0]
        if not products:
            kind = "register"
        try:
            if kind == "register":
                price = f"{rng.randint(1, 5000) / 100:.2f}"
                products.append(
                    register(f"SKU-{step}", f"Product {step}", price=price,
                             stock=rng.randint(0, 15))
                )
            elif kind == "rename":
                product_rename(product_id=rng.choice(products), name=f"Renamed {step}")
            elif kind == "reprice":
                product_reprice(
                    product_id=rng.choice(products), price=Decimal(rng.randint(1, 9999)) / 100
                )
            elif kind == "restock":
                product_restock(product_id=rng.choice(products), quantity=rng.randint(1, 10))
            elif kind == "place":
                chosen = rng.sample(products, k=rng.randint(1, min(3, len(products))))
                orders.append(
                    place(rng.choice(users), *[(p, rng.randint(1, 6)) for p in chosen],
                          address=f"{step} High St")
                )
            elif kind == "cancel" and orders:
                order_cancel(order_id=rng.choice(orders), user_id=0, is_staff=True)
            elif kind == "ship" and orders:
                shipments.append(
                    shipment_create(order_id=rng.choice(orders), carrier=rng.choice(["DHL", "UPS"]))
                    .aggregate_id
                )
            elif kind == "advance" and shipments:
                shipment_change_status(
                    shipment_id=rng.choice(shipments), status=rng.choice(STATUSES[1:])
                )
        except ApplicationError:  # out of stock, wrong state, backwards transition
            failed += 1
        if rng.random() < 0.15:
            project(batch_size=rng.choice([1, 2, 5, 17, 500]))
    return failed


@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_rebuild_equals_incremental_catch_up(event_store, make_user, seed):
    rng = random.Random(seed)
    users = [make_user(name) for name in ("john", "jane", "max")]
    failed = run_random_commands(rng, users, steps=120)
    project()
    assert failed > 0  # the mix includes rejected commands
    assert OrderHistory.objects.exists() and ProductCatalog.objects.exists()
    incremental = read_models()

    for name in PROJECTORS:
        rebuild(get_projector(name), batch_size=rng.choice([3, 50, 500]))
        assert projection_position(name) == head_position()

    assert read_models() == incremental
    assert_read_models_match_the_aggregates()


def assert_read_models_match_the_aggregates() -> None:
    repository = get_app().repository
    names = {}
    for row in ProductCatalog.objects.all():
        product = repository.get(row.product_id)
        assert isinstance(product, Product)
        assert (row.sku, row.name, row.price, row.stock, row.reserved, row.version) == (
            product.sku, product.name, product.price, product.stock, product.reserved,
            product.version,
        )
        assert row.stock_available == product.available >= 0
        names[str(row.product_id)] = row.name
    for row in OrderHistory.objects.all():
        order = repository.get(row.order_id)
        assert isinstance(order, Order)
        assert (row.status, row.version, row.total, row.shipment_id) == (
            order.status, order.version, order.total, order.shipment_id
        )
        assert [line["product_name"] for line in row.lines] == [
            names[line["product_id"]] for line in row.lines
        ]
        if order.shipment_id:
            shipment = repository.get(order.shipment_id)
            assert (row.carrier, row.shipment_status) == (shipment.carrier, shipment.status)
