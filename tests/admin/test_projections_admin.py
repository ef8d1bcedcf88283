"""The projections' status page: position, head, lag, state and last error of each
projection, and the rebuild, retry and catch-up actions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.domain import Product
from projections.models import Checkpoint, ProductCatalog
from projections.projectors import ProductCatalogProjector
from projections.registry import PROJECTORS
from projections.status import ProjectionStatus
from tests.admin.helpers import messages_of

pytestmark = pytest.mark.django_db

STATUS_PAGE = reverse("admin:projections_checkpoint_changelist")


def statuses(client) -> dict[str, ProjectionStatus]:
    response = client.get(STATUS_PAGE)
    assert response.status_code == 200
    return {s.name: s for s in response.context["statuses"]}


def act(client, action: str, *names: str):
    return client.post(STATUS_PAGE, {"action": action, "projection": list(names)})


def test_status_page_shows_position_head_and_lag(staff_client, given_product, caught_up):
    given_product("MUG-1")
    given_product("TEE-9")
    caught_up()
    given_product("LAMP-2")  # not projected yet

    response = staff_client.get(STATUS_PAGE)
    body = response.content.decode()
    by_name = {s.name: s for s in response.context["statuses"]}
    assert set(by_name) == set(PROJECTORS)
    catalog = by_name["product_catalog"]
    assert (catalog.position, catalog.head, catalog.lag_events) == (2, 3, 1)
    assert catalog.lag_seconds >= 0 and catalog.status == "ok"
    for header in ("Position", "Head", "Lag (events)", "Lag (seconds)", "State", "Last error"):
        assert header in body
    assert 'data-projection="product_catalog"' in body
    # each projection links to its (read-only) checkpoint page
    checkpoint = Checkpoint.objects.get(projection="product_catalog")
    link = reverse("admin:projections_checkpoint_change", args=[checkpoint.pk])
    assert link in body
    page = staff_client.get(link)
    assert page.status_code == 200 and page.context["has_change_permission"] is False


def test_catch_up_action(staff_client, given_product, caught_up):
    given_product("MUG-1")
    response = act(staff_client, "catch_up", "product_catalog")
    assert response.status_code == 302 and response.url == STATUS_PAGE
    assert messages_of(response)[0] == "Product catalog caught up: applied 1 new events."
    assert statuses(staff_client)["product_catalog"].lag_events == 0


def test_rebuild_action_replays_the_log(staff_client, given_product, caught_up):
    given_product("MUG-1")
    given_product("TEE-9")
    caught_up()
    response = act(staff_client, "rebuild", *PROJECTORS)
    assert response.status_code == 302
    messages = messages_of(response)
    assert len(messages) == len(PROJECTORS)
    assert any("Rebuilt Product catalog" in m and "synchronously" in m for m in messages)
    assert set(ProductCatalog.objects.values_list("sku", flat=True)) == {"MUG-1", "TEE-9"}
    status = statuses(staff_client)["product_catalog"]
    assert (status.position, status.head, status.status) == (2, 2, "ok")


def test_failed_projection_shows_its_error_and_retry_now_recovers(
    staff_client, given_product, caught_up, monkeypatch
):
    def broken(self, event):
        raise RuntimeError("catalog handler is broken")

    monkeypatch.setitem(ProductCatalogProjector.handlers, Product.Registered, broken)
    given_product("MUG-1")
    caught_up()  # parks product_catalog at the failing event

    response = staff_client.get(STATUS_PAGE)
    status = {s.name: s for s in response.context["statuses"]}["product_catalog"]
    assert status.status == "failed" and status.position == 0
    assert "catalog handler is broken" in status.last_error
    assert "catalog handler is broken" in response.content.decode()

    # still broken: retry reports the failure and stays parked
    response = act(staff_client, "retry", "product_catalog")
    assert any("Product catalog is still failing at event 1" in m
               for m in messages_of(response))

    monkeypatch.undo()  # the fix is deployed
    response = act(staff_client, "retry", "product_catalog")
    assert messages_of(response)[-1] == "Product catalog caught up: applied 1 new events."
    status = statuses(staff_client)["product_catalog"]
    assert (status.status, status.position, status.last_error) == ("ok", 1, "")
    assert ProductCatalog.objects.filter(sku="MUG-1").exists()


def test_rebuild_that_fails_shows_the_error_and_keeps_the_old_rows(
    staff_client, given_product, caught_up, monkeypatch
):
    given_product("MUG-1")
    caught_up()

    def broken(self, event):
        raise RuntimeError("catalog handler is broken")

    monkeypatch.setitem(ProductCatalogProjector.handlers, Product.Registered, broken)
    response = act(staff_client, "rebuild", "product_catalog")
    assert response.status_code == 302
    assert any("product_catalog" in m and "broken" in m for m in messages_of(response))
    assert ProductCatalog.objects.filter(sku="MUG-1").exists()  # rolled back


def test_actions_need_a_selection_and_a_known_action(staff_client, event_store):
    assert "Select at least one" in messages_of(act(staff_client, "rebuild"))[-1]
    assert "Choose an action" in messages_of(act(staff_client, "drop", "product_catalog"))[-1]
    assert "Select at least one" in messages_of(act(staff_client, "rebuild", "nope"))[-1]
