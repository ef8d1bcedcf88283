"""Register, obtain a token, and use it: real token authentication end to end."""

from unittest.mock import ANY

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.api.helpers import assert_error, assert_saved

pytestmark = pytest.mark.django_db

REGISTER = "/api/auth/register/"
TOKEN = "/api/auth/token/"
PASSWORD = "correct-horse-battery"


def register(client: APIClient, username: str = "alice", password: str = PASSWORD, **extra):
    return client.post(REGISTER, {"username": username, "password": password, **extra},
                       format="json")


def test_register_then_token_then_command(event_store, given_product):
    client = APIClient()
    mug = given_product()

    response = register(client, email="alice@example.com")
    assert response.status_code == 201, response.content
    user = User.objects.get(username="alice")
    assert response.json() == {"id": user.id, "username": "alice"}
    assert user.email == "alice@example.com" and not user.is_staff
    assert user.check_password(PASSWORD)

    response = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"token", "expiry"}
    token = response.json()["token"]

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post("/api/commands/orders/", {
        "lines": [{"product_id": str(mug), "quantity": 1}], "shipping_address": "1 Main St",
    }, format="json")
    assert_saved(response, 201, "order", version=1, total="19.99", number=ANY)


def test_each_login_is_a_token_of_its_own(db):
    client = APIClient()
    register(client)
    first = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    second = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    assert first.json()["token"] != second.json()["token"]
    for token in (first.json()["token"], second.json()["token"]):
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert client.get("/api/queries/orders/").status_code == 200


@pytest.mark.parametrize("keyword", ["Token", "Bearer", "bearer"])
def test_a_token_works_as_token_or_bearer(db, keyword, event_store):
    client = APIClient()
    register(client)
    token = client.post(TOKEN, {"username": "alice", "password": PASSWORD},
                        format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token}")
    assert client.get("/api/queries/orders/").status_code == 200
    response = client.post("/api/commands/orders/", {}, format="json")
    assert_error(response, 400, "invalid", {"lines", "shipping_address"})


def test_email_is_optional(db):
    response = register(APIClient())
    assert response.status_code == 201
    assert User.objects.get(username="alice").email == ""


def test_customer_token_on_a_staff_command_is_403(db):
    client = APIClient()
    register(client)
    token = client.post(TOKEN, {"username": "alice", "password": PASSWORD},
                        format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post("/api/commands/products/",
                           {"sku": "A", "name": "A", "price": "1.00", "stock": 1}, format="json")
    assert_error(response, 403, "permission_denied")


@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token", "Token a b",
                                    "Bearer abc"])
def test_bad_credentials_are_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post("/api/commands/orders/", {}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_no_credentials_are_401(db):
    response = APIClient().post("/api/commands/orders/", {}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_users_token_is_401(db):
    client = APIClient()
    register(client)
    token = client.post(TOKEN, {"username": "alice", "password": PASSWORD},
                        format="json").json()["token"]
    User.objects.filter(username="alice").update(is_active=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert_error(client.post("/api/commands/orders/", {}, format="json"),
                 401, "not_authenticated")


@pytest.mark.parametrize(
    "body",
    [{"username": "alice", "password": "wrong-password"},
     {"username": "nobody", "password": PASSWORD}],
)
def test_wrong_credentials_for_a_token_are_401(db, body):
    client = APIClient()
    register(client)
    response = client.post(TOKEN, body, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_token_needs_both_fields(db):
    response = APIClient().post(TOKEN, {}, format="json")
    assert_error(response, 400, "invalid", {"username", "password"})


def test_a_stale_token_does_not_block_login(db):
    client = APIClient()
    register(client)
    client.credentials(HTTP_AUTHORIZATION="Token stale")
    response = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200


@pytest.mark.parametrize("password", ["123", "password", "12345678901", "alice-smith"])
def test_weak_password_is_a_400(db, password):
    response = register(APIClient(), username="alice-smith", password=password)
    body = assert_error(response, 400, "invalid", {"password"})
    assert body["errors"]["password"]
    assert not User.objects.filter(username="alice-smith").exists()


@pytest.mark.parametrize("username", ["alice", "ALICE", "Alice"])
def test_duplicate_username_is_a_400_field_error(db, username):
    client = APIClient()
    register(client)
    response = register(client, username=username)
    assert_error(response, 400, "invalid", {"username"})
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("username", ""), ("username", "has space"), ("username", "x" * 151),
     ("username", None), ("email", "not-an-email"), ("password", ""), ("password", None)],
)
def test_invalid_registration_fields(db, field, value):
    body = {"username": "alice", "password": PASSWORD, field: value}
    response = APIClient().post(REGISTER, body, format="json")
    assert_error(response, 400, "invalid", {field})
    assert User.objects.count() == 0


def test_registration_is_a_customer_even_if_asked_for_staff(db):
    response = register(APIClient(), is_staff=True, is_superuser=True)
    assert response.status_code == 201
    user = User.objects.get(username="alice")
    assert not user.is_staff and not user.is_superuser
