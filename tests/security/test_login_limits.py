"""Login limits count the name that logs in (issue 23): a padded username, a JSON
number as a username, and the admin's lockout per (username, IP) pair were all ways
round the limits. Each test below passed an attack through on the old code."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from shop.accounts.services import username_key
from tests.support.throttle import throttle_rates as rates

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
TOKEN = "/api/auth/token/"
REGISTER = "/api/auth/register/"
ADMIN_LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def admin(db):
    return User.objects.create_superuser(username="admin", password=PASSWORD)


def login(username, password: str = "wrong-password", ip: str = "10.3.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(
        TOKEN, {"username": username, "password": password}, format="json"
    )


def admin_login(username: str, password: str = "wrong-password", ip: str = "10.3.1.1"):
    return APIClient(REMOTE_ADDR=ip).post(ADMIN_LOGIN, {"username": username, "password": password})


def test_the_key_is_the_name_as_login_reads_it():
    assert username_key("  Admin\t") == username_key("admin") == username_key("ＡＤＭＩＮ")
    assert username_key("admin" + " " * 30) == "admin"


def test_padding_the_username_is_counted_under_the_same_name(admin):
    with rates(login_username="3/minute", login_ip="100/minute"):
        for padding in ("", " ", "   "):
            assert login("admin" + padding).status_code == 401
        refused = login("admin" + " " * 30, PASSWORD)
        assert refused.status_code == 429, refused.content  # was 200 with a staff token
        assert refused.json()["code"] == "throttled"
        assert login("\tAdmin ", PASSWORD).status_code == 429


@pytest.mark.parametrize("value", [31337, 1.5, True, None, ["admin"], {"a": 1}])
@pytest.mark.parametrize("path", [TOKEN, REGISTER])
def test_a_username_that_is_not_a_string_is_400_before_anything(db, path, value):
    with rates(login_username="1/minute", register_username="1/minute"):
        for _ in range(3):  # never counted, never tried: 400 each time, never 429
            response = APIClient(REMOTE_ADDR="10.3.0.2").post(
                path, {"username": value, "password": "whatever-pass-1"}, format="json"
            )
            assert response.status_code == 400, response.content
            body = response.json()
            assert body["code"] == "invalid"
            assert "username" in body["errors"]


def test_a_password_that_is_not_a_string_is_400(db):
    response = login("alice", 12345678)
    assert response.status_code == 400
    assert "password" in response.json()["errors"]


def test_a_body_that_is_not_an_object_is_400(db):
    response = APIClient().post(TOKEN, ["admin", "pw"], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_admin_locks_one_username_out_from_every_address(admin):
    # 40 wrong passwords for admin from 10 addresses; then the right one from an 11th.
    for attempt in range(40):
        admin_login("admin", ip=f"10.4.0.{attempt % 10 + 1}")
    refused = admin_login("admin", PASSWORD, ip="10.4.0.99")
    assert refused.status_code == 429, refused.status_code  # was 302: logged in
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) <= 5 * 60  # minutes, not hours
    # Spelt another way it is the same name.
    assert admin_login(" ADMIN ", PASSWORD, ip="10.4.0.98").status_code == 429


def test_the_admin_locks_one_address_out_across_usernames(admin):
    # Spraying 60 usernames from one address: locked out long before the end.
    answers = [admin_login(f"user{n}", ip="10.5.0.1").status_code for n in range(60)]
    assert 429 in answers, answers
    assert answers.index(429) <= 5
    # ... and that address cannot log in as anyone, the real admin included.
    assert admin_login("admin", PASSWORD, ip="10.5.0.1").status_code == 429
    # Other addresses are not affected.
    ok = admin_login("admin", PASSWORD, ip="10.5.0.2")
    assert ok.status_code == 302, ok.status_code


def test_the_username_lockout_lasts_minutes(settings):
    from datetime import timedelta

    assert settings.AXES_LOCKOUT_PARAMETERS == ["username", "ip_address"]
    assert timedelta(minutes=15) >= settings.AXES_COOLOFF_TIME


def test_behind_the_proxy_the_lockout_counts_the_forwarded_address(admin, settings):
    """With NUM_PROXIES=1 (deploy/nginx.conf) every login arrives from the proxy's
    address: the lockout reads X-Forwarded-For as the throttles do, so one client's
    failures do not lock out everybody behind the same proxy."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def via_proxy(username: str, password: str, client_ip: str):
        return APIClient(
            REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"203.0.113.9, {client_ip}"
        ).post(ADMIN_LOGIN, {"username": username, "password": password})

    answers = [via_proxy(f"user{n}", "wrong-password", "10.6.0.1").status_code for n in range(8)]
    assert 429 in answers, answers
    assert via_proxy("admin", PASSWORD, "10.6.0.1").status_code == 429
    assert via_proxy("admin", PASSWORD, "10.6.0.2").status_code == 302
