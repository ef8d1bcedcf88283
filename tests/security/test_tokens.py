"""API tokens (django-rest-knox): hashed at rest, expiring, revocable (issue: tokens
never expired, survived a password change, had no logout, sat in plain text)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.support.prepared import prepared_statements
from tests.support.threads import background
from tests.token_cases import PASSWORD, token_lookup_mismatches

pytestmark = pytest.mark.django_db

ORDERS = "/api/queries/orders/"


@pytest.fixture
def alice(db):
    return User.objects.create_user(username="alice", password=PASSWORD)


def login(username: str = "alice", password: str = PASSWORD) -> dict:
    response = APIClient().post("/api/auth/token/", {"username": username,
                                                     "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def as_token(token: str, keyword: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token}")
    return client


def works(token: str) -> bool:
    status = as_token(token).get(ORDERS).status_code
    assert status in (200, 401)
    return status == 200


def test_a_token_is_stored_hashed_and_expires(alice):
    before = timezone.now()
    body = login()

    row = AuthToken.objects.get(user=alice)
    stored = [str(value) for value in AuthToken.objects.values_list().get()]
    assert not any(body["token"] in value for value in stored)
    assert row.digest != body["token"]

    expiry = datetime.fromisoformat(body["expiry"])
    assert body["expiry"].endswith("+00:00")
    ttl = settings.REST_KNOX["TOKEN_TTL"]
    assert before + ttl <= expiry <= timezone.now() + ttl
    assert works(body["token"])

    AuthToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(seconds=1))
    assert not works(body["token"])
    assert not AuthToken.objects.filter(user=alice).exists()  # an expired token is dropped


@pytest.mark.parametrize("keyword", ["Token", "Bearer"])
def test_logout_ends_the_token_used_and_only_it(alice, keyword):
    used, other = login()["token"], login()["token"]

    response = as_token(used, keyword).post("/api/auth/logout/")

    assert response.status_code == 204
    assert not response.content
    assert not works(used)
    assert works(other)


def test_logout_all_ends_every_token_of_the_user(alice):
    tokens = [login()["token"] for _ in range(3)]
    User.objects.create_user(username="bob", password=PASSWORD)
    bobs = login("bob")["token"]

    assert as_token(tokens[0], "Bearer").post("/api/auth/logout-all/").status_code == 204

    assert not any(works(token) for token in tokens)
    assert works(bobs)


def test_a_password_change_ends_every_token(alice):
    tokens = [login()["token"] for _ in range(2)]
    alice.set_password("another-horse-battery")
    alice.save()
    assert not any(works(token) for token in tokens)
    assert works(login(password="another-horse-battery")["token"])


def test_a_password_change_in_the_admin_ends_every_token(alice):
    token = login()["token"]
    admin = User.objects.create_superuser(username="root", password=PASSWORD)
    client = APIClient()
    client.force_login(admin)
    response = client.post(f"/admin/auth/user/{alice.pk}/password/", {
        "password1": "another-horse-battery", "password2": "another-horse-battery",
        "usable_password": "true"})
    assert response.status_code == 302, response.content[:2000]
    assert not works(token)


@pytest.mark.parametrize("header", [None, "Token", "Token a b", "Bearer nope", b"Token \xff\xfe"])
def test_logout_without_a_good_token_is_401(alice, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    for url in ("/api/auth/logout/", "/api/auth/logout-all/"):
        response = client.post(url)
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


def test_a_session_cannot_log_out_a_token(alice):
    client = APIClient()
    client.force_login(alice)
    assert client.post("/api/auth/logout/").status_code == 401


def test_a_name_in_another_case_or_form_logs_in(alice):
    assert works(login("ALICE")["token"])
    assert works(login("ａｌｉｃｅ")["token"])


def test_the_token_lookup_reads_what_knox_reads():
    """Every request's token lookup is one hand-written statement (``tokens_of_key``);
    it gives the same tokens and users as knox's ORM query (tests/token_cases.py)."""
    assert token_lookup_mismatches() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["logout", "password change", "deactivation", "expiry"])
def test_a_token_ends_at_once_for_a_client_whose_lookup_is_prepared(alice, ending):
    """A client keeps calling with its token on one connection, where the token lookup
    is a prepared statement (planned once, run with each request's key). The token
    ends (its user logs out, changes the password, is deactivated, or it expires)
    while the client calls: every request sent after that answers 401, none 200."""
    token = login()["token"]
    prepared, ended = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    statuses: list[tuple[bool, int]] = []  # (sent after the end, status)

    def calling() -> None:
        client = as_token(token, "Bearer")
        for _ in range(settings.PREPARE_THRESHOLD + 3):
            assert client.get(ORDERS).status_code == 200
        assert prepared_statements('"token_key" = $1', DEFAULT_DB_ALIAS)
        prepared.set()
        deadline = time.monotonic() + 30
        while len([after for after, _ in statuses if after]) < 5:
            assert time.monotonic() < deadline
            after = ended.is_set()
            statuses.append((after, client.get(ORDERS).status_code))

    caller = background(calling, failures, then=prepared.set)
    assert prepared.wait(timeout=60)
    if ending == "logout":
        assert as_token(token).post("/api/auth/logout/").status_code == 204
    elif ending == "password change":
        alice.set_password("another-horse-battery")
        alice.save()
    elif ending == "deactivation":
        User.objects.filter(pk=alice.pk).update(is_active=False)  # no signal: the door checks
    else:
        AuthToken.objects.filter(user=alice).update(expiry=timezone.now())
    ended.set()
    caller.join(timeout=60)
    assert failures == []
    assert {status for after, status in statuses if after} == {401}
    assert {status for after, status in statuses if not after} <= {200, 401}
