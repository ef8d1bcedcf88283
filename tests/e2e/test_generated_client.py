"""The API as a consumer uses it: a client generated from the live ``/api/schema/``.

``openapi-python-client`` generates a package from the running server's document (with
``--fail-on-warning``) into a temporary directory; the customer and staff flows then
run through that package with its defaults (``AuthenticatedClient`` sends
``Authorization: Bearer <token>``), against a live server with a real Celery worker.
Every request and every response of the run is validated strictly with
``openapi-core`` against the same document (an ``httpx`` response hook), successes
and errors alike.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.openapi import Validator

pytestmark = [pytest.mark.e2e]

PACKAGE = "shop_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture
def generated(live_server, tmp_path):
    """The generated client package, imported from a temporary directory."""
    schema_url = f"{live_server.url}/api/schema/?format=json"
    config = tmp_path / "generator.yaml"
    # No post hooks: the generator would run ruff on the output, which needs no checking.
    config.write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    result = subprocess.run(
        [str(GENERATOR), "generate", "--url", schema_url, "--fail-on-warning",
         "--meta", "none", "--config", str(config), "--output-path",
         str(tmp_path / PACKAGE)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def validator(live_server):
    return Validator(httpx.get(f"{live_server.url}/api/schema/?format=json").json())


def api(name: str):
    """``api("commands.order_place")`` → the generated module."""
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def model(name: str):
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def test_a_generated_client_drives_the_customer_and_staff_flows(
    generated, validator, live_server, workers, staff
):
    exchanges: list[tuple[str, str, int]] = []

    def check(response: httpx.Response) -> None:
        validator.check_httpx(response)  # raises: the hook's error fails the call
        exchanges.append((response.request.method, response.request.url.path,
                          response.status_code))

    hooks = {"event_hooks": {"response": [check]}}
    anonymous = generated.Client(base_url=live_server.url, httpx_args=hooks,
                                 timeout=httpx.Timeout(40.0))

    def signed_in(username: str, password: str):
        token = api("auth.token_obtain").sync(
            client=anonymous,
            body=model("TokenObtainInputRequest")(username=username, password=password),
        )
        assert isinstance(token, model("Token")), token
        assert token.expiry is not None
        # The generator's default: Authorization: Bearer <token>.
        return generated.AuthenticatedClient(
            base_url=live_server.url, token=token.token, httpx_args=hooks,
            timeout=httpx.Timeout(40.0),
        )

    def read_after(call, position: int, **kwargs):
        """A query at least as fresh as ``position`` (503 projection_behind: retry)."""
        deadline = time.monotonic() + 30
        while True:
            response = call(min_position=position, wait=10, **kwargs)
            if response.status_code != 503 or time.monotonic() > deadline:
                assert response.status_code == 200, response.content
                return response.parsed
            time.sleep(0.2)

    # --- staff: a catalog ------------------------------------------------------------
    admin = signed_in(staff.username, "pass-word-123")
    mug = api("commands.product_register").sync_detailed(
        client=admin, body=model("ProductRegisterInputRequest")(
            sku="MUG-1", name="Blue mug", price="19.99", stock=10, category="kitchen"),
    )
    assert mug.status_code == 201, mug.content
    product_id = mug.parsed.product_id
    renamed = api("commands.product_rename").sync_detailed(
        product_id, client=admin, body=model("ProductRenameInputRequest")(name="Blue cup"),
        if_match=mug.headers["ETag"],
    )
    assert renamed.status_code == 200 and renamed.parsed.version == 2, renamed.content
    repriced = api("commands.product_reprice").sync(
        product_id, client=admin, body=model("ProductRepriceInputRequest")(price="17.50"),
        idempotency_key="reprice-1",
    )
    assert repriced.version == 3
    restocked = api("commands.product_restock").sync(
        product_id, client=admin, body=model("ProductRestockInputRequest")(quantity=5),
    )
    assert restocked.version == 4
    stale = api("commands.product_rename").sync_detailed(
        product_id, client=admin, body=model("ProductRenameInputRequest")(name="Old"),
        if_match='"1"',
    )
    assert stale.status_code == 412 and stale.parsed.code.value == "precondition_failed"

    # --- a customer registers, browses and orders -----------------------------------
    registered = api("auth.user_register").sync(
        client=anonymous,
        body=model("UserRegisterInputRequest")(username="alice", password="pass-word-123"),
    )
    assert registered.username == "alice"
    alice = signed_in("alice", "pass-word-123")
    catalog = read_after(
        lambda **kw: api("queries.product_list").sync_detailed(client=anonymous, **kw),
        restocked.position,
    )
    [listed] = catalog.results
    assert (listed.name, listed.price, listed.stock_available) == ("Blue cup", "17.50", 15)
    assert catalog.next_ is None and catalog.previous is None
    # Search with every parameter the schema declares, and the facets it describes.
    found = api("queries.product_list").sync(
        client=anonymous, q="bleu cpu", category="kitchen", min_price="10",
        max_price="20", in_stock=True, sort=model("ProductListSort")("relevance"),
    )
    assert [p.sku for p in found.results] == ["MUG-1"]
    assert [(f.value, f.count) for f in found.facets.category] == [("kitchen", 1)]
    assert [(b.min_, b.max_, b.count) for b in found.facets.price if b.count] == [
        ("10.00", "25.00", 1)]
    refused = api("queries.product_list").sync_detailed(
        client=anonymous, min_price="5", max_price="1")
    assert refused.status_code == 400 and "min_price" in refused.parsed.errors.to_dict()

    line = model("OrderLineInputRequest")(product_id=product_id, quantity=2)
    place = api("commands.order_place")
    order = place.sync(client=alice, body=model("OrderPlaceInputRequest")(
        lines=[line], shipping_address="1 Harbour Road"), idempotency_key="order-1")
    assert order.total == "35.00"
    replay = place.sync_detailed(client=alice, body=model("OrderPlaceInputRequest")(
        lines=[line], shipping_address="1 Harbour Road"), idempotency_key="order-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.parsed.order_id == order.order_id

    history = read_after(
        lambda **kw: api("queries.order_history_list").sync_detailed(client=alice, **kw),
        order.position,
    )
    [row] = history.results
    assert row.order_id == order.order_id and row.status.value == "placed"
    assert row.shipment is None  # a null shipment validates and parses
    events = api("queries.order_event_list").sync(order.order_id, client=alice)
    [placed] = events.results
    assert placed.type_.value == "Order.Placed" and placed.data.total == "35.00"

    too_many = place.sync_detailed(client=alice, body=model("OrderPlaceInputRequest")(
        lines=[model("OrderLineInputRequest")(product_id=product_id, quantity=999)],
        shipping_address="1 Harbour Road"))
    assert too_many.status_code == 409
    assert too_many.parsed.code.value == "insufficient_stock"

    second = place.sync(client=alice, body=model("OrderPlaceInputRequest")(
        lines=[line], shipping_address="1 Harbour Road"))
    cancelled = api("commands.order_cancel").sync(
        second.order_id, client=alice,
        body=model("OrderCancelInputRequest")(reason="changed my mind"),
    )
    assert cancelled.version == 2
    forbidden = api("commands.product_register").sync_detailed(
        client=alice, body=model("ProductRegisterInputRequest")(
            sku="NOPE", name="No", price="1.00", stock=1),
    )
    assert forbidden.status_code == 403
    assert forbidden.parsed.code.value == "permission_denied"

    # --- staff ship it ------------------------------------------------------------------
    shipment = api("commands.shipment_create").sync(
        client=admin, body=model("ShipmentCreateInputRequest")(
            order_id=order.order_id, carrier="DHL"),
    )
    moved = api("commands.shipment_status_change").sync(
        shipment.shipment_id, client=admin,
        body=model("ShipmentStatusChangeInputRequest")(status=model("ShipmentStatus")("dispatched")),
    )
    shipped = read_after(
        lambda **kw: api("queries.order_detail").sync_detailed(
            order.order_id, client=alice, **kw),
        moved.position,
    )
    assert shipped.status.value == "shipped"
    assert shipped.shipment.status.value == "dispatched"
    assert shipped.shipment.carrier == "DHL"
    timeline = api("queries.order_event_list").sync(order.order_id, client=admin)
    assert [e.type_.value for e in timeline.results] == ["Order.Placed", "Order.Shipped"]
    projections = api("queries.projection_status_list").sync(client=admin)
    assert {p.status.value for p in projections.results} <= {"ok", "failed"}

    # --- credentials ---------------------------------------------------------------------
    nobody = generated.AuthenticatedClient(
        base_url=live_server.url, token="not-a-token", httpx_args=hooks
    )
    refused = api("queries.order_history_list").sync_detailed(client=nobody)
    assert refused.status_code == 401
    assert refused.parsed.code.value == "not_authenticated"
    wrong = api("auth.token_obtain").sync_detailed(
        client=anonymous,
        body=model("TokenObtainInputRequest")(username="alice", password="wrong-password"),
    )
    assert wrong.status_code == 401

    statuses = {status for _, _, status in exchanges}
    assert {200, 201, 401, 403, 409, 412} <= statuses, exchanges
    assert len(exchanges) >= 20
