"""Fixtures for the HTTP tests of the command API: givens written through the services."""

from __future__ import annotations

from uuid import UUID

import pytest

from tests.givens import place, register


@pytest.fixture
def given_product(event_store):
    """Register a product through the service; returns its id."""

    def make(sku: str = "MUG-1", *, name: str = "Blue mug", price: str = "19.99",
             stock: int = 10) -> UUID:
        return register(sku, name, price=price, stock=stock)

    return make


@pytest.fixture
def given_order(event_store, given_product):
    """Place an order through the service for ``user``; returns its id."""

    def make(user, lines: list[tuple[UUID, int]] | None = None) -> UUID:
        return place(user, *(lines or [(given_product(), 1)]))

    return make


@pytest.fixture
def schema(client):
    """The OpenAPI document as ``GET /api/schema/?format=json`` answers it."""
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


# --- every response of this suite validates against the published schema ----------


@pytest.fixture(scope="session")
def schema_validator(django_db_setup):
    from tests.support.openapi import Validator, published_schema

    return Validator(published_schema())


@pytest.fixture(autouse=True)
def responses_match_the_schema(request, schema_validator, monkeypatch):
    """Every response a test here gets from a documented operation validates strictly
    against ``/api/schema/`` (status declared, body and headers as documented): the
    suite's successes and errors are the proof that the document is true.

    A test of the error machinery itself (a made-up status) opts out with
    ``@pytest.mark.undocumented_response``."""
    if request.node.get_closest_marker("undocumented_response"):
        return
    from django.test import Client

    send = Client.request

    def request(self, **kwargs):
        response = send(self, **kwargs)
        schema_validator.check_django(response)
        return response

    monkeypatch.setattr(Client, "request", request)
