"""Kept-alive connections: gunicorn does not close an idle connection under a client
that may send on it (``keepalive`` in deploy/gunicorn.conf.py).

With gunicorn's default of 2 s, a client reusing a connection in the instant gunicorn
closed it lost its request: an order POSTed by tests/reliability/test_contention.py
read "connection reset by peer" (CI, 2026-12-08), and nginx answers such a POST 502,
as it never resends a POST. Every gunicorn of the project reads that one file: the
production stack's, the tests' and the benchmarks'.
"""

from __future__ import annotations

import re
import runpy

import httpx
import pytest
from gunicorn.config import Config

from tests.security.test_slow_clients import stack  # noqa: F401 - the fixture
from tests.support.http import after_idle
from tests.support.processes import GUNICORN_CONF, ROOT

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

# Longer than gunicorn's default keep-alive (2 s) plus the second its workers may take
# to notice it ran out: a server on the default closes the connection within it.
IDLE = 4.0


def gunicorn_keepalive() -> float:
    """The keep-alive gunicorn runs with, read from the project's file as gunicorn's
    ``-c`` reads it (each name it knows, validated by its own setting)."""
    cfg = Config()
    for name, value in runpy.run_path(str(GUNICORN_CONF)).items():
        if name in cfg.settings:
            cfg.set(name, value)
    return cfg.keepalive


def nginx_upstream_keepalive() -> float:
    """How long nginx keeps an idle connection to gunicorn (its upstream block's
    ``keepalive_timeout``; nginx's default, 60 s, if the block does not say)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"^upstream\s+\w+\s*\{(.*?)^\}", conf, re.M | re.S).group(1)
    found = re.search(r"^\s*keepalive_timeout\s+(\d+)s?\s*;", upstream, re.M)
    return float(found.group(1)) if found else 60.0


def test_gunicorn_outwaits_every_client_that_reuses_its_connections():
    keepalive = gunicorn_keepalive()
    assert keepalive > nginx_upstream_keepalive(), keepalive
    assert keepalive > httpx.Limits().keepalive_expiry, keepalive
    assert keepalive > IDLE


def test_the_tests_gunicorn_keeps_an_idle_connection(services):
    web = services.gunicorn(workers=1, threads=2)
    answers = after_idle(web.base_url, IDLE)
    assert [a.status for a in answers] == [200, 200], answers


def test_the_production_stacks_gunicorn_keeps_an_idle_connection(stack):  # noqa: F811
    answers = after_idle(f"http://127.0.0.1:{stack.app_port}", IDLE)
    assert [a.status for a in answers] == [200, 200], answers
    # and through nginx, which holds its own connection to gunicorn meanwhile
    answers = after_idle(f"http://127.0.0.1:{stack.port}", IDLE)
    assert [a.status for a in answers] == [200, 200], answers
