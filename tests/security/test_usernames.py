"""Usernames are unique ignoring case and Unicode compatibility forms, and the
database is the judge (issue: ``ＪＯＨＮ`` registered beside ``john``; 20 parallel
registrations of case variants created 8 accounts)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from shop.accounts.models import UsernameKey
from tests.support.throttle import throttle_rates

REGISTER = "/api/auth/register/"
PASSWORD = "correct-horse-battery"


def register(username: str):
    return APIClient().post(REGISTER, {"username": username, "password": PASSWORD},
                            format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("variant", ["john", "JOHN", "ＪＯＨＮ", "Ｊｏｈｎ", "ｊｏｈｎ"])
def test_a_variant_of_a_taken_name_is_400(variant):
    assert register("john").status_code == 201
    response = register(variant)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert set(response.json()["errors"]) == {"username"}
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_names_are_stored_in_nfkc():
    assert register("ＪＯＨＮ").status_code == 201
    assert User.objects.get().username == "JOHN"
    assert register("john").status_code == 400


@pytest.mark.django_db
def test_the_database_refuses_a_second_user_with_the_same_key():
    User.objects.create_user(username="straße", password=PASSWORD)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="STRASSE", password=PASSWORD)  # not via the API
    assert UsernameKey.objects.get().key == "strasse"


@pytest.mark.django_db
def test_renaming_a_user_moves_its_claim():
    user = User.objects.create_user(username="john", password=PASSWORD)
    user.username = "johnny"
    user.save()
    assert register("John").status_code == 201
    assert register("JOHNNY").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_registrations_of_one_name_make_one_account():
    variants = ["race", "RACE", "Race", "rAce", "raCe", "racE", "ＲＡＣＥ", "ｒａｃｅ", "RAce",
                "rACE", "RaCe", "rAcE", "ＲａＣｅ", "Ｒace", "rａce", "raｃe", "racｅ", "RACe",
                "rACe", "RaCE"]
    assert len(set(variants)) == 20
    barrier = threading.Barrier(len(variants))  # one IP, one name: no throttle here
    statuses: list[int] = []

    def attempt(name: str) -> None:
        try:
            barrier.wait()
            response = register(name)
            statuses.append(response.status_code)
            if response.status_code == 400:
                assert set(response.json()["errors"]) == {"username"}
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(name,)) for name in variants]
    with throttle_rates(register_ip=None, register_username=None):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert sorted(statuses) == [201] + [400] * 19
    assert User.objects.count() == 1
    assert UsernameKey.objects.get().key == "race"
