"""Equivalence: the read models built incrementally equal a rebuild, for any history,
and show the aggregates as they are (the one such property; the reliability suite
checks the same two things after its faults)."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import truncate_event_tables
from tests.givens import project
from tests.support.readside import (
    assert_caught_up_and_healthy,
    assert_matches_rebuild,
    assert_read_models_match_the_aggregates,
    read_model_rows,
)

pytestmark = pytest.mark.django_db

CUSTOMERS = [(101, "ann"), (102, "bob")]
idx = st.integers(0, 50)
steps = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 4), st.integers(1, 9999),
              st.integers(0, 6)),
    st.tuples(st.just("rename"), idx, st.text(min_size=1, max_size=12)),
    st.tuples(st.just("reprice"), idx, st.integers(-5, 9999)),
    st.tuples(st.just("restock"), idx, st.integers(0, 5)),
    st.tuples(st.just("place"), st.integers(0, 1),
              st.lists(st.tuples(idx, st.integers(1, 4)), min_size=1, max_size=3)),
    st.tuples(st.just("cancel"), idx, st.booleans()),
    st.tuples(st.just("ship"), idx, st.sampled_from(["DHL", "UPS"])),
    st.tuples(st.just("advance"), idx,
              st.sampled_from(["dispatched", "in_transit", "delivered", "created"])),
    st.tuples(st.just("catch_up"), st.integers(1, 7)),
)


def reset_everything(event_store) -> None:
    from projections.models import Checkpoint
    from projections.registry import get_projector
    from tests.support.readside import projection_names

    truncate_event_tables(event_store)
    for name in projection_names():
        get_projector(name).reset()
    Checkpoint.objects.all().delete()


def run_step(step, products: list, orders: list, shipments: list) -> None:
    from catalog.services import product_register, product_rename, product_reprice, product_restock
    from orders.services import order_cancel, order_place
    from projections.registry import get_projector
    from projections.runner import catch_up
    from shipping.services import shipment_change_status, shipment_create
    from tests.support.readside import projection_names

    def pick(items: list, i: int):
        return items[i % len(items)] if items else None

    kind = step[0]
    if kind == "register":
        _, sku, cents, stock = step
        saved = product_register(sku=f"SKU-{sku}", name=f"Product {sku}",
                                 price=Decimal(cents) / 100, stock=stock)
        products.append(saved.aggregate_id)
    elif kind == "rename" and products:
        product_rename(product_id=pick(products, step[1]), name=step[2])
    elif kind == "reprice" and products:
        product_reprice(product_id=pick(products, step[1]), price=Decimal(step[2]) / 100)
    elif kind == "restock" and products:
        product_restock(product_id=pick(products, step[1]), quantity=step[2])
    elif kind == "place" and products:
        customer_id, username = CUSTOMERS[step[1]]
        lines = list({pick(products, i): q for i, q in step[2]}.items())
        saved, _ = order_place(customer_id=customer_id, customer=username, lines=lines,
                               shipping_address="1 Property Way")
        orders.append(saved.aggregate_id)
    elif kind == "cancel" and orders:
        customer_id = CUSTOMERS[0][0]
        order_cancel(order_id=pick(orders, step[1]), user_id=customer_id,
                     is_staff=step[2], reason="property test")
    elif kind == "ship" and orders:
        saved = shipment_create(order_id=pick(orders, step[1]), carrier=step[2])
        shipments.append(saved.aggregate_id)
    elif kind == "advance" and shipments:
        shipment_change_status(shipment_id=pick(shipments, step[1]), status=step[2])
    elif kind == "catch_up":
        # Part-way catch-up with a small batch: later steps land on top of it.
        for name in projection_names():
            catch_up(get_projector(name), batch_size=step[1])


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=st.lists(steps, min_size=1, max_size=40), final_batch=st.integers(1, 10))
def test_incremental_read_models_equal_a_rebuild(event_store, no_projection_trigger, history,
                                                 final_batch):
    """Fault: none; the hazard is any order of commands (failing ones included) and
    catch-ups that stop part-way, at arbitrary batch sizes.
    Load: 25 generated histories of up to 40 steps: register (duplicate SKUs too),
    rename, reprice, restock, place, cancel, ship, advance, and catch-up with batches
    of 1-7 events; each history on an empty log and empty read models.
    Must survive: equivalence. After a final catch-up every projection is at the head
    and healthy, its rows equal a rebuild from scratch, and the catalog shows each
    product as its aggregate is.
    """
    from shop.errors import ApplicationError

    # The test drives the catch-ups itself (no_projection_trigger).
    reset_everything(event_store)
    products: list = []
    orders: list = []
    shipments: list = []
    for step in history:
        # A rejected command is allowed: it appends nothing.
        with contextlib.suppress(ApplicationError):
            run_step(step, products, orders, shipments)

    project(batch_size=final_batch)
    assert_caught_up_and_healthy()
    assert_read_models_match_the_aggregates()
    before = read_model_rows()
    assert_matches_rebuild()
    assert read_model_rows() == before
