"""After a customer is forgotten, no table of any of the shop's databases holds their
name or address in plaintext: every database is dumped with ``pg_dump`` and searched,
before (where both must be found, or the search proves nothing) and after."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from rest_framework.test import APIClient

from tests.givens import project, register

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump"),
]

USERNAME = "zelda-quux"
FIRST, LAST = "Zelda", "Quuxington"
EMAIL = "zelda@quux.example"
ADDRESS = "42 Wallaby Way, Sydney"
SECRETS = (USERNAME, LAST, EMAIL, ADDRESS)


def databases() -> list[dict]:
    """Each distinct PostgreSQL database the shop's aliases reach (one when the read
    side shares the write side's database, two when it has its own)."""
    seen, found = set(), []
    for alias in connections:
        settings = connections[alias].settings_dict
        if settings["ENGINE"] != "django.db.backends.postgresql":
            continue
        key = (settings["HOST"], settings["PORT"], settings["NAME"])
        if key not in seen:
            seen.add(key)
            found.append(settings)
    return found


def dump(settings: dict) -> str:
    command = ["pg_dump", "--data-only", "--no-owner", "-h", settings["HOST"] or "127.0.0.1",
               "-p", str(settings["PORT"] or 5432), "-U", settings["USER"] or "postgres",
               settings["NAME"]]
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          timeout=120).stdout


def found(secret: str) -> list[str]:
    return [settings["NAME"] for settings in databases() if secret in dump(settings)]


@pytest.mark.usefixtures("no_projection_trigger")
def test_no_database_holds_a_forgotten_customers_name_or_address(event_store):
    zelda = User.objects.create_user(USERNAME, EMAIL, "pass-word-123",
                                     first_name=FIRST, last_name=LAST)
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": USERNAME, "password": "pass-word-123"},
                        format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    mug = register("MUG-1", stock=10)
    response = client.post("/api/commands/orders/", {
        "lines": [{"product_id": str(mug), "quantity": 1}], "shipping_address": ADDRESS,
    }, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert response.status_code == 201, response.content
    project()
    for secret in SECRETS:
        assert found(secret), f"{secret!r} is in no database before: the search is blind"

    call_command("forget_customer", USERNAME)
    project()

    for secret in SECRETS:
        assert found(secret) == [], f"{secret!r} is still in plaintext"
    zelda.refresh_from_db()
    assert zelda.username == f"forgotten-{zelda.pk}"
