"""``/`` is a small page that says where to go: the API docs, the back office, health and
a first request; the back office's "View site" leads there (issue 24: both were 404s)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


@pytest.mark.parametrize("debug", [False, True])
def test_the_front_door_names_the_shop_and_where_to_go(client, settings, debug):
    settings.DEBUG = debug
    settings.SHOP_NAME = "Quayside Goods"
    response = client.get("/", HTTP_HOST="127.0.0.1:8001")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "<h1>Quayside Goods</h1>" in html
    assert {"/api/docs/", "/admin/", "/api/health/"} <= set(links(html))
    # The README's first request, with this server's address.
    assert "curl -s -X POST http://127.0.0.1:8001/api/auth/token/" in html
    assert 'curl -s http://127.0.0.1:8001/api/queries/orders/ -H "Authorization: Token' in html
    assert ("demo-pass-123" in html) is debug  # the demo password only in development


def test_every_link_of_the_front_door_answers(client):
    html = client.get("/").content.decode()
    for href in links(html):
        response = client.get(href)
        assert response.status_code in (200, 302), (href, response.status_code)
        if response.status_code == 302:  # the back office asks for a login
            assert response["Location"].startswith("/admin/login/")


def test_the_back_offices_view_site_link_leads_to_the_front_door(client, staff):
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    [view_site] = re.findall(r'<a href="([^"]+)">View site</a>', html)
    assert view_site == "/"
    assert client.get(view_site).status_code == 200


def test_the_front_door_takes_no_posts(client):
    assert client.post("/").status_code == 405
