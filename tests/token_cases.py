"""The token lookup of every authenticated request (``tokens_of_key``: one hand-written
statement, not knox's ORM query) reads what the ORM reads: the same tokens, each field
of the token and of its user with the same value and type, the user already attached.
For tokens of active, staff and inactive users, expired or not, never logged in or
logged in. Checked on PostgreSQL (tests/security/test_tokens.py) and on SQLite
(tests/sqlite/test_embedded_default.py)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient

from shop.accounts.authentication import tokens_of_key

PASSWORD = "correct-horse-battery"


def _fields(instance) -> dict[str, tuple[type, object]]:
    return {f.attname: (type(getattr(instance, f.attname)), getattr(instance, f.attname))
            for f in instance._meta.concrete_fields}


def token_lookup_mismatches() -> list[str]:
    """How ``tokens_of_key`` differs from knox's own query, for a table of tokens (an
    empty list: not at all), and whether each live token authenticates a request."""
    cases = [
        ("carol", {}),
        ("dave", {"is_staff": True, "first_name": "Dave", "email": "dave@example.com"}),
        ("erin", {"is_active": False}),
    ]
    made = []
    for username, attributes in cases:
        user = User.objects.create_user(username=username, password=PASSWORD, **attributes)
        user.last_login = timezone.now() if user.is_staff else None
        user.save()
        made.append(AuthToken.objects.create(user)[1])  # the token as the client holds it
        made.append(AuthToken.objects.create(user, expiry=timedelta(hours=-1))[1])
    made.append(AuthToken.objects.create(User.objects.get(username="carol"), expiry=None)[1])

    mismatches = []
    for token in made:
        key = token[:CONSTANTS.TOKEN_KEY_LENGTH]
        by_orm = list(AuthToken.objects.filter(token_key=key).select_related("user"))
        read = tokens_of_key(key)
        if [t.pk for t in read] != [t.pk for t in by_orm] or not read:
            mismatches.append(f"{key}: {read} != {by_orm}")
            continue
        for mine, theirs in zip(read, by_orm, strict=True):
            if not AuthToken.user.is_cached(mine):
                mismatches.append(f"{key}: the user is not attached")
            for name, (mine_value, their_value) in (
                ("token", (_fields(mine), _fields(theirs))),
                ("user", (_fields(mine.user), _fields(theirs.user))),
            ):
                if mine_value != their_value:
                    mismatches.append(f"{key} {name}: {mine_value} != {their_value}")
            if mine._state.db != theirs._state.db or mine._state.adding:
                mismatches.append(f"{key}: state {mine._state.__dict__}")
    # Then each token at the door (an inactive account's request revokes its tokens).
    for token in made:
        live = AuthToken.objects.filter(
            token_key=token[:CONSTANTS.TOKEN_KEY_LENGTH], user__is_active=True,
        ).exclude(expiry__lte=timezone.now()).exists()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        status = client.get("/api/queries/orders/").status_code
        if status != (200 if live else 401):
            mismatches.append(f"{token[:4]}...: {status} for a token that is live: {live}")
    return mismatches
