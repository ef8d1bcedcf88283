"""Hostile or careless query parameters: every one is a 400 ``invalid`` at once, never
a hang, a held thread or a 500 (issue: NaN waits, far-ahead waits, NUL bytes, garbage
cursors, bad page sizes)."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from projections.apis import WAIT_SLOTS
from shop.eventstore import head_position
from tests.givens import place, project, register

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/queries/products/"
ORDERS = "/api/queries/orders/"


@pytest.fixture
def behind(event_store, customer):
    """A log whose read models lag: the order is appended but not projected."""
    mug = register("MUG-1", "Blue mug")
    project()
    place(customer, (mug, 1))
    return head_position()


def cursor(querystring: str) -> str:
    return base64.b64encode(querystring.encode()).decode()


@pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "infinity", "1e999", "-1"])
def test_wait_is_a_finite_number_at_least_zero(client_for, customer, behind, within, wait):
    for url in (PRODUCTS, ORDERS):
        with within(2.0):
            response = client_for(customer).get(url, {"min_position": behind, "wait": wait})
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "invalid"
        assert set(response.json()["errors"]) == {"wait"}


@pytest.mark.parametrize("ahead", [1, 999_999, 10**30])
def test_min_position_beyond_the_head_is_400_at_once(client_for, behind, within, ahead):
    with within(2.0):
        response = client_for().get(PRODUCTS, {"min_position": behind + ahead, "wait": 30})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert set(response.json()["errors"]) == {"min_position"}


@override_settings(QUERY_WAIT_SLOTS=1)
def test_a_wait_past_the_cap_is_503_at_once(client_for, behind, within):
    with WAIT_SLOTS.claim() as claimed:  # another request holds the only slot
        assert claimed
        with within(2.0):
            response = client_for().get(PRODUCTS, {"min_position": behind, "wait": 30})
    assert response.status_code == 503
    assert response.json()["code"] == "projection_behind"
    assert response["Retry-After"] == "1"

    with within(2.0):  # the slot is free again: the wait runs (and runs out)
        response = client_for().get(PRODUCTS, {"min_position": behind, "wait": 0.2})
    assert response.status_code == 503
    assert "waiting" not in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (PRODUCTS, {"search": "mug\x00"}),
        (PRODUCTS, {"min_position": "1\x00"}),
        (PRODUCTS, {"cursor": "\x00"}),
        (ORDERS, {"customer": "jo\x00hn"}),
        (ORDERS, {"anything\x00": "1"}),
        ("/api/health/", {"x": "\x00"}),
        ("/admin/catalog/product/", {"q": "\x00"}),
    ],
)
def test_a_nul_byte_in_any_query_parameter_is_400(client_for, staff, event_store, url, params):
    response = client_for(staff).get(url, params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert body["errors"]


@pytest.mark.parametrize(
    ("url", "value"),
    [
        (ORDERS, "cD1nYXJiYWdl"),  # "p=garbage": no date for placed_at
        (ORDERS, cursor("p=2026-13-45")),
        (PRODUCTS, cursor("p=MUG\x00")),  # the NUL is inside the base64
        (PRODUCTS, cursor("o=x")),
        (PRODUCTS, "!!!not base64"),
        (PRODUCTS, "é"),
        (ORDERS, cursor("p=\xff")),
    ],
)
def test_a_cursor_the_api_did_not_give_out_is_400(client_for, staff, event_store, url, value):
    response = client_for(staff).get(url, {"cursor": value})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert set(response.json()["errors"]) == {"cursor"}


@pytest.mark.parametrize("size", ["abc", "0", "-1", "1.5", "", "9" * 5000])
def test_a_bad_page_size_is_400(client_for, customer, event_store, size):
    response = client_for(customer).get(ORDERS, {"page_size": size})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert set(response.json()["errors"]) == {"page_size"}


def test_a_page_size_over_the_maximum_is_the_maximum(client_for, customer, event_store):
    response = client_for(customer).get(ORDERS, {"page_size": "100000"})
    assert response.status_code == 200
