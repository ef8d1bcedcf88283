"""Checks on the log and the read side, run in the test process.

The one oracle for "no event lost or applied twice": the read models built
incrementally (by workers, batch after batch, across crashes) equal the ones a
rebuild from an empty read model produces from the same log.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from django.db import connections

from shop.eventstore import get_app, head_position


def notifications() -> list:
    """Every notification in the log, in order."""
    app = get_app()
    head = head_position()
    if not head:
        return []
    return list(app.recorder.select_notifications(start=1, limit=head))


def notification_by_id() -> dict[int, Any]:
    return {n.id: n for n in notifications()}


def event_type_counts() -> Counter:
    """How many events of each ``Aggregate.Event`` name the log holds."""
    return Counter(".".join(n.topic.split(":")[1].split(".")[-2:]) for n in notifications())


def decode(notification) -> Any:
    return get_app().mapper.to_domain_event(notification)


def projection_names() -> list[str]:
    from projections.registry import PROJECTORS

    return sorted(PROJECTORS)


def read_model_rows() -> dict[str, list[dict]]:
    """Every read-model row of every projection, keyed by table, in primary-key order."""
    from projections.registry import get_projector
    from tests.givens import rows

    return {
        model._meta.db_table: rows(model)
        for name in projection_names()
        for model in get_projector(name).models
    }


def checkpoint_positions() -> dict[str, int]:
    from projections.runner import projection_position

    return {name: projection_position(name) for name in projection_names()}


def assert_caught_up_and_healthy() -> None:
    from projections.models import Checkpoint

    head = head_position()
    positions = checkpoint_positions()
    assert all(p == head for p in positions.values()), (positions, head)
    failed = list(Checkpoint.objects.filter(status=Checkpoint.FAILED).values(
        "projection", "position", "error_position", "failures", "retry_at", "updated_at",
        "last_error"))
    assert not failed, failed


def assert_matches_rebuild(batch_size: int | None = None) -> None:
    """The read models as they are equal a rebuild of them from the whole log."""
    from projections.registry import get_projector
    from projections.runner import rebuild

    incremental = read_model_rows()
    for name in projection_names():
        rebuild(get_projector(name), batch_size=batch_size)
    rebuilt = read_model_rows()
    assert incremental.keys() == rebuilt.keys()
    for table in incremental:
        assert len(incremental[table]) == len(rebuilt[table]), table
        for before, after in zip(incremental[table], rebuilt[table], strict=True):
            assert before == after, f"{table}: incremental != rebuilt"


def wait_caught_up(timeout: float, *, what: str = "projections to catch up",
                   describe=None) -> None:
    """Poll the checkpoints until every projection is at the head (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        head = head_position()
        positions = checkpoint_positions()
        if head and all(p >= head for p in positions.values()):
            return
        if time.monotonic() >= deadline:
            extra = describe() if describe else ""
            raise AssertionError(
                f"Timed out after {timeout:.0f} s waiting for {what}: head {head}, "
                f"checkpoints {positions}\n{extra}"
            )
        time.sleep(0.2)
        # A fresh connection per poll: a dropped session must not wedge the wait.
        connections.close_all()


def assert_accepted_are_durable(responses, belongs) -> dict[int, Any]:
    """Every 2xx command response's ``position`` is an event in the log that belongs
    to what the command touched (``belongs(response, event) -> bool``)."""
    log = notification_by_id()
    for resp in responses:
        if not resp.ok:
            continue
        position = resp.body["position"]
        assert position in log, f"accepted command lost: {resp.tag} {resp.body}"
        event = decode(log[position])
        assert belongs(resp, event), (resp.tag, resp.body, event)
    return log


def assert_read_models_match_the_aggregates() -> None:
    """Every catalog row and every order in the history shows its aggregates as they
    are now (stock, price, status, total, the shipment, each line's current name)."""
    from catalog.domain import Product
    from orders.domain import Order
    from projections.models import OrderHistory, ProductCatalog

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
