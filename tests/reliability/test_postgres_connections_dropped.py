"""PostgreSQL connections dropped: every session on the test database is terminated
under load, several times."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.load import CommandStream, command_belongs, start_shop_under_load
from tests.support.readside import (
    assert_accepted_are_durable,
    assert_caught_up_and_healthy,
    assert_matches_rebuild,
    assert_read_models_match_the_aggregates,
    wait_caught_up,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

KILLS = 3
THREADS = 3


def terminate_sessions(settings_dict: dict, names: list[str]) -> int:
    """Terminate every session on the test database but this one (our own psycopg
    connection): gunicorn's, the worker's, beat's and the test process's own.

    With a timeout, pg_terminate_backend() returns once the session has ended, not
    when it was merely signalled: a request that starts after this returns must find
    its connection dead (and replace it), not lose a still-dying one mid-request.
    """
    with psycopg.connect(
        host=settings_dict.get("HOST") or "127.0.0.1", port=settings_dict.get("PORT") or 5432,
        user=settings_dict.get("USER") or "postgres", password=settings_dict.get("PASSWORD"),
        dbname="postgres", autocommit=True,
    ) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            [names],
        ).fetchall()
    return len(rows)


def test_web_and_workers_recover_from_dropped_database_connections(services, api_users):
    """Fault: pg_terminate_backend() on every session of the test database, 3 times,
    while commands are being served and projected (this drops pooled connections of
    Django and of the event store in gunicorn, in the Celery worker and in this test).
    Load: 3 client threads sending orders, renames and reprices over HTTP to gunicorn
    without pause; a Celery worker and beat (sweep every second) run throughout.
    Must survive: service and data. Tolerance: a request in flight at the moment of a
    kill may fail (at most one per client thread per kill, answered 5xx); once the
    kills are over, 60 further commands must all succeed (pre-ping and Django's health
    checks replace dead connections by themselves). Every accepted command's position
    is its event in the log; the projections catch up and equal a rebuild.
    """
    from django.db import connection, connections

    shop = start_shop_under_load(services, api_users, prefix="PG", price="7.00", seed=5)
    web, make = shop.web, shop.make
    settings_dict = dict(connection.settings_dict)
    # Both databases' sessions (the read side's is another database when split).
    names = sorted({connections[alias].settings_dict["NAME"] for alias in ("default", "read")})

    terminated = []
    with CommandStream(web.base_url, make, threads=THREADS) as stream:
        for _ in range(KILLS):
            stream.wait_for(stream.count() + 15)
            terminated.append(terminate_sessions(settings_dict, names))
        recovered_from = stream.count() + THREADS  # skip requests in flight at the kill
        stream.wait_for(recovered_from + 60)
    responses = stream.snapshot()
    connections.close_all()  # this process's own sessions were terminated too

    def logs() -> str:
        return services.logs(2500)  # gunicorn, worker and beat

    assert all(terminated), terminated
    during = [(r.tag, r.status, r.body, r.error) for r in responses[:recovered_from]
              if not r.ok]
    after = [(r.tag, r.status, r.body, r.error) for r in responses[recovered_from:]
             if not r.ok]
    assert not after, (after[:5], logs())
    assert len(during) <= KILLS * THREADS, (during, logs())
    assert all(status >= 500 for _, status, _, _ in during), during
    assert_accepted_are_durable(responses, command_belongs)

    wait_caught_up(45, what="projections to catch up after the kills", describe=logs)
    services.stop_all()
    assert_caught_up_and_healthy()
    assert_read_models_match_the_aggregates()
    assert_matches_rebuild()
