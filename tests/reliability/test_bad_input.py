"""Bad input at scale: schema-driven fuzzing of every command and query endpoint."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from shop.eventstore import head_position
from tests.support.throttle import throttle_rates

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 25


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Query values a schema-driven generator would hardly ever produce: NUL bytes, cursors
# that decode (to garbage positions, offsets and directions) or do not, non-finite
# numbers. Any of them may replace any query parameter of a query.
NUL_TEXT = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=10), st.text(max_size=10))
CURSORS = st.builds(lambda o, r, p: f"o={o}&r={r}&p={p}", st.integers(-5, 10**6),
                    st.sampled_from(["0", "1", "x"]), st.one_of(st.text(max_size=30), NUL_TEXT))
HOSTILE_VALUES = st.one_of(
    NUL_TEXT,
    CURSORS.map(b64),
    st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode()),
    st.text(max_size=30),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "", "9" * 30]),
)
# A lone surrogate (JSON can spell one: "\ud800") put into a string of a body, or as
# a key: every such body is 400 invalid, never a 500 (issue 23).
SURROGATE_TEXT = st.builds(lambda a, b: f"{a}\ud800{b}", st.text(max_size=5),
                           st.text(max_size=5))
NON_FINITE = st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-1"])  # never a wait


def hostile_query(operation) -> st.SearchStrategy[dict[str, str]]:
    """One query parameter alone with a hostile value, so it reaches the code that
    reads it (among other invalid parameters it would stop at their 400)."""
    names = [p.name for p in operation.query]
    if not names:
        return st.just({})
    return st.sampled_from(names).flatmap(
        lambda name: st.fixed_dictionaries({name: NON_FINITE if name == "wait"
                                            else HOSTILE_VALUES}))


def check_response(case, response, head_before: int, head_after: int) -> str | None:
    """What is wrong with one answer, or None."""
    label = f"{case.operation.label} -> {response.status_code}"
    status = response.status_code
    try:
        body = response.json()
    except Exception:  # noqa: BLE001
        body = None
    if status >= 500 and not (status == 503 and isinstance(body, dict)
                              and body.get("code") == "projection_behind"):
        return f"{label}: server error {response.content[:300]!r}"
    if status >= 400:
        if not (isinstance(body, dict) and isinstance(body.get("code"), str)
                and isinstance(body.get("detail"), str) and body["detail"].strip()):
            return f"{label}: error body without code/detail: {response.content[:300]!r}"
        if status == 400 and not isinstance(body.get("errors"), dict):
            return f"{label}: 400 without errors: {body}"
        if head_after != head_before:
            return f"{label}: a rejected request appended {head_after - head_before} events"
        return None
    if case.operation.method.upper() == "POST":
        if head_after == head_before:
            return None  # a command that changes nothing appends nothing (API.md)
        if not (isinstance(body, dict) and body.get("position") == head_after > head_before):
            return (f"{label}: accepted command's position {body!r} is not the new head "
                    f"({head_before} -> {head_after})")
    elif head_after != head_before:
        return f"{label}: a query appended events"
    return None


def test_fuzzed_requests_get_clean_errors_and_append_only_accepted_events(
    live_db, api_users, request
):
    """Fault: malformed, boundary and schema-violating input (schemathesis, positive
    and negative generation) to every POST /api/commands/ and GET /api/queries/
    operation, as a customer and as staff (Token header).
    Load: up to 25 examples per operation and user, in-process through Django's WSGI
    app; path ids are sometimes real (a seeded product, order and shipment).
    Must survive: the contract and the log. No 5xx (503 projection_behind is the
    documented answer to a min_position the read side has not reached); a lone
    surrogate in a body's strings (or as a key) is refused; every 4xx has
    the ``code``/``detail`` body (400 also ``errors``); a rejected request appends no
    event, a query none, and an accepted command's ``position`` is the new head - so
    the log grows only by the events of accepted commands.
    """
    from django.core.wsgi import get_wsgi_application

    from catalog.services import product_register
    from orders.services import order_place
    from shipping.services import shipment_create

    customer, staff = api_users["customer"], api_users["staff"]
    product = product_register(sku="FUZZ-1", name="Fuzz", price=Decimal("2.50"),
                               stock=1_000_000).aggregate_id
    known = {"product_id": str(product)}
    for key in ("order_id", "shipment_id"):
        saved, _ = order_place(customer_id=customer.id, customer=customer.username,
                               lines=[(product, 1)], shipping_address="1 Fuzz Rd")
        known["order_id"] = str(saved.aggregate_id)
        if key == "shipment_id":
            known["shipment_id"] = str(shipment_create(order_id=saved.aggregate_id,
                                                       carrier="DHL").aggregate_id)

    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    # Logging out would end the fuzzing users' tokens (tests/security covers it).
    schema = schema.include(path_regex=r"^/api/(commands/|queries/|auth/(register|token)/)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    assert {"POST /api/auth/register/", "POST /api/auth/token/"} <= {
        op.label for op in operations}

    problems: list[str] = []
    calls = {"count": 0}

    def fuzz(strategy, hostile, headers: dict[str, str]) -> None:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy, hostile=hostile, surrogate=st.one_of(st.none(), SURROGATE_TEXT))
        def run(case, hostile, surrogate):
            if hostile:
                case.query = hostile
            # Generated Idempotency-Keys stay: a keyed rejection records its outcome
            # beside the event log, so it too must leave the log as it was (a repeated
            # key replays or is 422 idempotency_key_reused, appending nothing).
            before = head_position()
            if surrogate is not None and isinstance(case.body, dict):
                # Sent as raw JSON: schemathesis re-validates a changed body in Rust,
                # which cannot hold a surrogate.
                strings = sorted(k for k, v in case.body.items() if isinstance(v, str))
                body = {**case.body, **dict.fromkeys(strings or [surrogate], surrogate)}
                response = Client().generic(
                    case.operation.method.upper(), case.formatted_path,
                    json.dumps(body).encode(), content_type="application/json",
                    HTTP_AUTHORIZATION=headers["Authorization"])
            else:
                response = case.call(headers=headers)
            calls["count"] += 1
            problem = check_response(case, response, before, head_position())
            if surrogate is not None and isinstance(case.body, dict) and not problem \
                    and response.status_code < 400:
                problem = (f"{case.operation.label}: a lone surrogate was accepted "
                           f"({response.status_code})")
            if problem:
                problems.append(problem)

        run()

    # Every request counts against no limit here: the throttles would turn most of the
    # run into 429s (tests/security/test_throttling.py tests them).
    unlimited = throttle_rates(**dict.fromkeys(
        ["user", "login_ip", "login_username", "register_ip", "register_username"]))
    unlimited.enable()
    request.addfinalizer(unlimited.disable)
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        # A min_position wait is bounded by `wait`; never let the fuzzer sleep.
        query = {"wait": 0} if operation.get_parameter("wait", "query") else None
        strategy = st.one_of([
            operation.as_strategy(mode, query=query, path_parameters=fixed)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for fixed in ({k: known[k] for k in names if k in known} or None, None)
        ])
        hostile = st.one_of(st.just({}), hostile_query(operation))
        for user in (customer, staff):
            fuzz(strategy, hostile, {"Authorization": f"Token {user.token}"})

    assert calls["count"] >= len(operations) * 2
    assert not problems, "\n".join(sorted(set(problems))[:30])
