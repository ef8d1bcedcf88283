"""Request bodies: one over 1 MiB is refused with 413 ``request_too_large`` before a
byte of it is read (issue: a 100 MB JSON body to /api/auth/register/ was parsed)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


class Unreadable:
    """A request stream that fails the test if anyone reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


@pytest.mark.parametrize("url", ["/api/auth/register/", "/api/commands/orders/",
                                 "/api/queries/products/", "/admin/login/"])
def test_a_declared_length_over_1_mib_is_413_unread(url):
    response = Client().generic("POST", url, b"", content_type="application/json", **{
        "CONTENT_LENGTH": str(100 * MIB), "wsgi.input": Unreadable()})
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert response.json()["detail"]


def test_one_byte_over_is_413_and_appends_nothing():
    body = json.dumps({"username": "alice", "password": "x" * MIB}).encode()
    response = Client().post("/api/auth/register/", body, content_type="application/json")
    assert response.status_code == 413
    assert not User.objects.exists()


def test_a_body_of_exactly_1_mib_is_read():
    body = json.dumps({"username": "alice", "password": "correct-horse-battery",
                       "pad": ""}).encode()
    body = body.replace(b'"pad": ""', b'"pad": "' + b"x" * (MIB - len(body)) + b'"')
    assert len(body) == MIB
    response = Client().post("/api/auth/register/", body, content_type="application/json")
    assert response.status_code == 201, response.content


def test_a_content_length_that_is_no_number_is_400():
    response = Client().generic("POST", "/api/auth/register/", b"{}",
                                content_type="application/json", CONTENT_LENGTH="lots")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
