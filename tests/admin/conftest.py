"""Fixtures for the admin tests: staff and customer browsers (Django's test client),
givens written through the command services, and catching the read models up."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest


@pytest.fixture
def staff_client(client, staff):
    """A client logged in as a staff member: ``is_staff``, not a superuser, and no
    model permissions: the shop's admin lets every staff member in (as the API does)."""
    assert staff.is_staff and not staff.is_superuser
    assert not staff.user_permissions.exists()
    client.force_login(staff)
    return client


@pytest.fixture
def customer_client(client, customer):
    client.force_login(customer)
    return client


@pytest.fixture
def caught_up(event_store):
    """Bring every read model up to the head of the log (in the tests' transaction,
    where the commit-time trigger never fires)."""
    from projections.registry import PROJECTORS, get_projector
    from projections.runner import catch_up

    def run() -> None:
        for name in PROJECTORS:
            catch_up(get_projector(name))

    return run


@pytest.fixture
def given_product(event_store):
    from catalog.services import product_register

    def make(sku: str = "MUG-1", *, name: str = "Blue mug", price: str = "19.99",
             stock: int = 10) -> UUID:
        return product_register(
            sku=sku, name=name, price=Decimal(price), stock=stock
        ).aggregate_id

    return make


@pytest.fixture
def given_order(event_store, given_product, customer):
    from orders.services import order_place

    def make(lines: list[tuple[UUID, int]] | None = None, *, user=None) -> UUID:
        if lines is None:
            lines = [(given_product(), 2)]
        user = user or customer
        saved, _total = order_place(customer_id=user.id, customer=user.username,
                                    lines=lines, shipping_address="1 Main St")
        return saved.aggregate_id

    return make


@pytest.fixture
def given_shipment(event_store):
    from shipping.services import shipment_create

    def make(order_id: UUID, carrier: str = "DHL") -> UUID:
        return shipment_create(order_id=order_id, carrier=carrier).aggregate_id

    return make

