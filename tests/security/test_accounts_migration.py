"""The accounts migration on a database that had DRF's plain-text tokens: existing
users get their normalised name claimed (the older of two colliding names keeps it)
and the ``authtoken_token`` table is gone."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from shop.accounts.models import UsernameKey


@pytest.mark.django_db(transaction=True)
def test_migrating_claims_existing_names_and_drops_plain_text_tokens():
    call_command("migrate", "accounts", "zero", verbosity=0)
    # Users as the shop had them (bulk_create: no signal, the table is not there yet).
    User.objects.bulk_create([User(username=name) for name in ("john", "JOHN", "ｊａｎｅ")])
    john, shouty, jane = (User.objects.get(username=name) for name in ("john", "JOHN", "ｊａｎｅ"))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                       "user_id integer NOT NULL, created timestamp NOT NULL)")
        cursor.execute("INSERT INTO authtoken_token VALUES ('plain', %s, now())", [john.pk])
        cursor.execute("INSERT INTO django_migrations (app, name, applied) "
                       "VALUES ('authtoken', '0001_initial', now())")

    call_command("migrate", "accounts", verbosity=0)

    assert dict(UsernameKey.objects.values_list("user_id", "key")) == {
        john.pk: "john", jane.pk: "jane"}
    assert not UsernameKey.objects.filter(user=shouty).exists()
    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
