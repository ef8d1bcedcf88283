"""Tokens die with the account (issue 23): a revoked password login (an unusable
password), ``is_active=False`` or a deleted user ends every token at once, and
reactivation brings none back. On the old code each token kept working."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
ORDERS = "/api/queries/orders/"


@pytest.fixture
def alice(db):
    return User.objects.create_user(username="alice", password=PASSWORD)


def tokens(n: int = 2) -> list[str]:
    issued = []
    for _ in range(n):
        response = APIClient().post(
            "/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
        )
        assert response.status_code == 200, response.content
        issued.append(response.json()["token"])
    return issued


def works(token: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    status = client.get(ORDERS).status_code
    assert status in (200, 401)
    return status == 200


def test_an_unusable_password_ends_every_token(alice):
    issued = tokens()
    alice.set_unusable_password()
    alice.save()
    assert not any(works(token) for token in issued)
    assert not AuthToken.objects.filter(user=alice).exists()


def test_the_admins_revoke_password_login_ends_every_token(alice, client):
    issued = tokens()
    staff = User.objects.create_superuser(username="boss", password=PASSWORD)
    client.force_login(staff)
    response = client.post(
        f"/admin/auth/user/{alice.pk}/password/",
        {"usable_password": "false", "unset-password": "Disable password-based authentication"},
    )
    assert response.status_code == 302, response.content[:500]
    alice.refresh_from_db()
    assert not alice.has_usable_password()
    assert not any(works(token) for token in issued)


def test_deactivating_ends_every_token_and_reactivating_brings_none_back(alice):
    issued = tokens()
    alice.is_active = False
    alice.save()
    assert not AuthToken.objects.filter(user=alice).exists()
    alice.is_active = True
    alice.save()
    assert not any(works(token) for token in issued)
    assert works(tokens(1)[0])  # a new login works again


def test_the_authentication_class_checks_the_account_too(alice):
    """A change that skips the signal (a queryset update) is caught on the next use:
    the token is refused and deleted, so reactivation brings none back."""
    issued = tokens()
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert not works(issued[0])
    User.objects.filter(pk=alice.pk).update(is_active=True)
    assert not any(works(token) for token in issued)

    issued = tokens()
    User.objects.filter(pk=alice.pk).update(password="!unusable")
    assert not works(issued[0])
    assert not AuthToken.objects.filter(user=alice).exists()


def test_a_deleted_user_has_no_tokens(alice):
    issued = tokens()
    alice.delete()
    assert not AuthToken.objects.exists()
    assert not any(works(token) for token in issued)


def test_a_token_of_an_active_account_keeps_working(alice):
    issued = tokens()
    alice.email = "alice@example.com"
    alice.save()
    assert all(works(token) for token in issued)
