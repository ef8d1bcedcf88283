"""The sales endpoints (staff): shapes, the from/to range and its limits, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from demo.management.commands.seed_demo import event_clock
from orders.services import order_cancel
from shop.eventstore import head_position
from tests.api.helpers import assert_error
from tests.givens import place, project, register

pytestmark = pytest.mark.django_db

DAILY, PRODUCTS = "/api/queries/sales/daily/", "/api/queries/sales/products/"
POSITION = "X-Projection-Position"


def today():
    return timezone.now().astimezone(UTC).date()


@pytest.fixture
def sales(event_store, customer):
    """Orders today and 40 days ago; one of today's is cancelled."""
    mug = register("MUG-1", "Blue mug", price="19.99", stock=100)
    pen = register("PEN-1", "Black pen", price="1.50", stock=100)
    old = today() - timedelta(days=40)
    with event_clock(datetime(old.year, old.month, old.day, 12, tzinfo=UTC)):
        place(customer, (mug, 5))
    place(customer, (mug, 1), (pen, 2))
    cancelled = place(customer, (pen, 3))
    order_cancel(order_id=cancelled, user_id=customer.pk, is_staff=False)
    project()
    return mug, pen


def test_daily_sales_default_to_the_last_30_days(client_for, staff, sales):
    response = client_for(staff).get(DAILY)

    assert response.status_code == 200
    assert int(response[POSITION]) == head_position()
    body = response.json()
    assert body["next"] is None and body["previous"] is None
    assert body["results"] == [
        {"date": today().isoformat(), "orders": 1, "units": 3, "revenue": "22.99",
         "cancelled": 1},
    ]


def test_daily_sales_over_a_range_oldest_first(client_for, staff, sales):
    start = today() - timedelta(days=60)
    response = client_for(staff).get(DAILY, {"from": start.isoformat(),
                                             "to": today().isoformat()})

    days = response.json()["results"]
    assert [d["date"] for d in days] == [(today() - timedelta(days=40)).isoformat(),
                                         today().isoformat()]
    assert days[0] == {"date": days[0]["date"], "orders": 1, "units": 5, "revenue": "99.95",
                       "cancelled": 0}


def test_product_sales_highest_revenue_first(client_for, staff, sales):
    mug, pen = sales
    start = (today() - timedelta(days=60)).isoformat()

    response = client_for(staff).get(PRODUCTS, {"from": start})

    assert response.status_code == 200
    assert int(response[POSITION]) == head_position()
    assert response.json()["results"] == [
        {"product_id": str(mug), "sku": "MUG-1", "product_name": "Blue mug", "units": 6,
         "revenue": "119.94"},
        {"product_id": str(pen), "sku": "PEN-1", "product_name": "Black pen", "units": 2,
         "revenue": "3.00"},
    ]
    # the default range leaves the order 40 days ago out
    default = client_for(staff).get(PRODUCTS).json()["results"]
    assert [(p["sku"], p["units"]) for p in default] == [("MUG-1", 1), ("PEN-1", 2)]


@pytest.mark.parametrize("url", [DAILY, PRODUCTS])
def test_sales_are_for_staff_only(client_for, customer, url, event_store):
    assert_error(client_for(None).get(url), 401, "not_authenticated")
    assert_error(client_for(customer).get(url), 403, "permission_denied")


@pytest.mark.parametrize("url", [DAILY, PRODUCTS])
@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-13-01"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-11-05", "to": "2026-11-04"}, "from"),  # from after to
    ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
    ({"from": "2026-11-05T00:00:00"}, "from"),
])
def test_a_bad_range_is_400_invalid(client_for, staff, url, params, field, event_store):
    assert_error(client_for(staff).get(url, params), 400, "invalid", {field})


def test_a_full_leap_year_is_allowed(client_for, staff, event_store):
    response = client_for(staff).get(DAILY, {"from": "2024-01-01", "to": "2024-12-31"})
    assert response.status_code == 200


def test_min_position_waits_for_the_sales_projection(client_for, staff, sales):
    position = head_position()
    response = client_for(staff).get(DAILY, {"min_position": position, "wait": 0})
    assert response.status_code == 200 and int(response[POSITION]) >= position

    register("TEA-1")  # not yet projected
    response = client_for(staff).get(DAILY, {"min_position": head_position(), "wait": 0})
    assert_error(response, 503, "projection_behind")
    assert response["Retry-After"]

