"""Who did what in the back office: the Activity page (sentences, filters), the order
page's timeline naming who acted and how, and "Forget selected customers" with its
confirmation step."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from projections.models import OrderHistory
from shop.accounts.domain import customer_id_for
from shop.eventstore import events_with_metadata
from tests.admin.helpers import messages_of
from tests.givens import project

pytestmark = pytest.mark.django_db

ACTIVITY = reverse("admin:projections_activity_changelist")
USERS = reverse("admin:auth_user_changelist")


@pytest.fixture
def acted(event_store, client_for, staff, customer):
    """Staff register a mug over the API and cancel John's order from the order page."""
    mug = client_for(staff).post("/api/commands/products/", {
        "sku": "MUG-1", "name": "Blue mug", "price": "19.99", "stock": 10},
        format="json").json()["product_id"]
    order = client_for(customer).post("/api/commands/orders/", {
        "lines": [{"product_id": mug, "quantity": 1}], "shipping_address": "1 Main St"},
        format="json").json()
    project()
    return order


def test_the_activity_page_reads_as_sentences_and_filters(staff_client, acted, staff):
    cancel = reverse("admin:projections_orderhistory_cancel", args=[acted["order_id"]])
    assert staff_client.post(cancel, {"reason": "Customer called"}).status_code == 302
    project()
    number = acted["number"]

    body = staff_client.get(ACTIVITY).content.decode()

    for sentence in (f"staff cancelled order {number}: Customer called (back office)",
                     f"john placed order {number} for €19.99 (API)",
                     "staff registered MUG-1 “Blue mug” at €19.99 (API)"):
        assert sentence in body
    assert body.index("cancelled order") < body.index("placed order")  # newest first
    by_staff = staff_client.get(ACTIVITY, {"actor_username": "staff"}).context["cl"]
    assert {row.type for row in by_staff.result_list} == {
        "Order.Cancelled", "Product.Registered"}
    the_order = staff_client.get(ACTIVITY, {"q": str(number)}).context["cl"]
    assert [row.type for row in the_order.result_list] == ["Order.Cancelled", "Order.Placed"]


def test_the_order_timeline_says_who_acted_and_how(staff_client, acted):
    url = reverse("admin:projections_orderhistory_change", args=[acted["order_id"]])

    timeline = staff_client.get(url).context["timeline"]

    assert [(e["type"], e["by"]) for e in timeline] == [("Order.Placed", "john (API)")]


def test_forgetting_customers_from_the_back_office_asks_first(client, acted, customer,
                                                                make_user):
    boss = User.objects.create_superuser("boss", password="pass-word-123")
    client.force_login(boss)
    selected = {"action": "forget_customers", "_selected_action": [customer.pk, boss.pk]}

    confirm = client.post(USERS, selected)

    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Forget these customers?" in page and "john" in page
    assert "Staff accounts are never forgotten: boss" in page
    assert User.objects.get(pk=customer.pk).username == "john"  # nothing yet
    assert events_with_metadata(customer_id_for(customer.pk)) == []

    done = client.post(USERS, {**selected, "confirmed": "yes"})

    assert done.status_code == 302
    assert any("Forgot john" in m for m in messages_of(done))
    assert any("boss is staff" in m for m in messages_of(done))
    assert User.objects.get(pk=customer.pk).username == f"forgotten-{customer.pk}"
    [(forgotten, metadata)] = events_with_metadata(customer_id_for(customer.pk))
    assert (metadata.actor.username, metadata.via) == ("boss", "admin")
    project()
    order = OrderHistory.objects.get(pk=acted["order_id"])
    assert (order.customer, order.shipping_address) == ("forgotten customer", None)
