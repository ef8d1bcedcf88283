"""Fixtures for the admin tests: staff and customer browsers (Django's test client),
givens written through the command services, and catching the read models up."""

from __future__ import annotations

from uuid import UUID

import pytest

from tests.givens import place, project, register, ship


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
    """Bring every read model up to the head of the log (``tests.givens.project``)."""
    return lambda: project()


@pytest.fixture
def given_product(event_store):
    def make(sku: str = "MUG-1", *, name: str = "Blue mug", price: str = "19.99",
             stock: int = 10) -> UUID:
        return register(sku, name, price=price, stock=stock)

    return make


@pytest.fixture
def given_order(event_store, given_product, customer):
    def make(lines: list[tuple[UUID, int]] | None = None, *, user=None) -> UUID:
        return place(user or customer, *(lines or [(given_product(), 2)]))

    return make


@pytest.fixture
def given_shipment(event_store):
    return ship

