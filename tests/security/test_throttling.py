"""Rate limits (DRF throttles) and the admin's lockout (django-axes): too many attempts
are 429 ``throttled`` with ``Retry-After``, and the limit lifts when its window has
passed (issue: 200 wrong passwords in a row were all answered; admin login unlimited).

The throttles' clock is the test's (``clock.advance``), so a window passes at once and
a slow machine cannot stretch one; the lockout's cool-off is waited out for real."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from shop.throttling import SharedRateThrottle
from tests.support.throttle import throttle_rates as rates

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
TOKEN = "/api/auth/token/"
REGISTER = "/api/auth/register/"


def login(username: str, password: str, ip: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(TOKEN, {"username": username, "password": password},
                                          format="json")


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "throttled"
    assert response.json()["detail"]
    assert 1 <= int(response["Retry-After"]) <= 60


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    """The time the throttles read (DRF's ``SimpleRateThrottle.timer``)."""
    clock = Clock()
    monkeypatch.setattr(SharedRateThrottle, "timer", staticmethod(clock))
    return clock


@pytest.fixture
def alice(db):
    return User.objects.create_user(username="alice", password=PASSWORD)


def test_login_is_limited_per_username_then_recovers(alice, clock):
    with rates(login_username="3/minute", login_ip="100/minute"):
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # spread over IPs: still one name
            assert login("alice", "wrong-password", ip).status_code == 401
        assert_throttled(login("ALICE", PASSWORD, "10.0.0.4"))  # even the right one
        assert_throttled(login("ａｌｉｃｅ", "wrong-password", "10.0.0.5"))
        assert login("bob", "wrong-password").status_code == 401  # another name is not

        clock.advance(61)
        assert login("alice", PASSWORD).status_code == 200


def test_login_is_limited_per_ip_then_recovers(alice, clock):
    with rates(login_ip="3/minute", login_username="100/minute"):
        for name in ("x1", "x2", "x3"):
            assert login(name, "wrong-password", "10.0.0.9").status_code == 401
        assert_throttled(login("alice", PASSWORD, "10.0.0.9"))
        assert login("alice", PASSWORD, "10.0.0.10").status_code == 200  # another IP

        clock.advance(61)
        assert login("alice", PASSWORD, "10.0.0.9").status_code == 200


def test_registration_is_limited_per_ip_and_per_username(db, clock):
    def register(username: str, ip: str):
        return APIClient(REMOTE_ADDR=ip).post(REGISTER, {"username": username,
                                                         "password": PASSWORD}, format="json")

    with rates(register_ip="2/minute", register_username="2/minute"):
        assert register("u1", "10.0.1.1").status_code == 201
        assert register("u2", "10.0.1.1").status_code == 201
        assert_throttled(register("u3", "10.0.1.1"))
        assert register("taken", "10.0.1.2").status_code == 201
        assert register("TAKEN", "10.0.1.3").status_code == 400
        assert_throttled(register("Taken", "10.0.1.4"))

        clock.advance(61)
        assert register("u3", "10.0.1.1").status_code == 201
    assert User.objects.count() == 4


def test_every_endpoint_has_a_per_user_limit(make_user, event_store, clock):
    alice, bob = make_user("alice"), make_user("bob")
    clients = {}
    for user in (alice, bob):
        clients[user] = APIClient()
        clients[user].force_authenticate(user)
    with rates(user="5/minute"):
        for _ in range(5):
            assert clients[alice].get("/api/queries/orders/").status_code == 200
        assert_throttled(clients[alice].get("/api/queries/products/"))
        assert_throttled(clients[alice].post("/api/commands/orders/", {}, format="json"))
        assert clients[bob].get("/api/queries/orders/").status_code == 200

        clock.advance(61)
        assert clients[alice].get("/api/queries/orders/").status_code == 200


def test_rates_come_from_the_environment():
    from shop.settings import throttle_rates

    rates = throttle_rates("login_ip=5/minute, user=off,register_username=none")
    assert rates["login_ip"] == "5/minute"
    assert rates["user"] is None and rates["register_username"] is None
    assert rates["login_username"] == "10/minute"


@override_settings(AXES_FAILURE_LIMIT=3, AXES_COOLOFF_TIME=timedelta(seconds=2))
def test_the_admin_login_locks_out_then_recovers(db):
    User.objects.create_superuser(username="root", password=PASSWORD)

    def admin_login(password: str, ip: str = "10.0.2.1"):
        return APIClient(REMOTE_ADDR=ip).post(
            "/admin/login/?next=/admin/", {"username": "root", "password": password})

    for _ in range(2):
        response = admin_login("wrong-password")
        assert response.status_code == 200  # the form again, with its error
    assert_throttled(admin_login("wrong-password"))  # the third failure locks
    assert_throttled(admin_login(PASSWORD))  # the right password is refused too
    # The username is locked from every address (issue 23), not only this one.
    assert_throttled(admin_login(PASSWORD, "10.0.2.2"))

    time.sleep(2.1)
    response = admin_login(PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_with_redis_down_the_limits_still_hold_per_process(alice, clock):
    from tests.support.processes import free_port

    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                    "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}},
        "local": settings.CACHES["local"],
    }
    with override_settings(CACHES=unreachable), rates(login_username="2/minute",
                                                      login_ip=None, user="100/minute"):
        assert login("alice", "wrong-password").status_code == 401  # no 500
        assert login("alice", "wrong-password").status_code == 401
        assert_throttled(login("alice", PASSWORD))

        clock.advance(61)
        assert login("alice", PASSWORD).status_code == 200
