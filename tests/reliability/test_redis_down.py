"""Redis down: the broker disappears while commands keep arriving."""

from __future__ import annotations

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


def test_commands_survive_a_broker_outage_and_the_read_side_recovers(
    services, redis_server, api_users
):
    """Fault: the private redis-server (the Celery broker) is killed with SIGKILL while
    commands arrive, stays down for 30 commands, and is started again on the same port
    (empty: it keeps no data, so every queued trigger is lost).
    Load: 3 client threads sending orders, renames and reprices over HTTP to gunicorn
    without pause; a Celery worker and beat (sweep every second) run throughout.
    Must survive: commands and the read side. Every command is answered 2xx (the
    broker is only a trigger); every accepted command's position is its event in the
    log; after Redis is back the projections reach the head with no manual step (the
    sweep re-triggers them) and equal a rebuild; the catalog matches the aggregates.
    """
    shop = start_shop_under_load(services, api_users, prefix="R", price="3.50")
    web, make = shop.web, shop.make

    with CommandStream(web.base_url, make, threads=3) as stream:
        stream.wait_for(20)
        redis_server.kill_group()
        down_from = stream.count()
        stream.wait_for(down_from + 30)
        redis_server.start()
        stream.wait_for(stream.count() + 20)
    responses = stream.snapshot()

    def logs() -> str:
        return services.logs(2500)  # gunicorn, worker and beat

    failed = [(r.tag, r.status, r.body, r.error) for r in responses if not r.ok]
    assert not failed, (failed[:5], logs())
    assert_accepted_are_durable(responses, command_belongs)

    wait_caught_up(45, what="the sweep to catch up after Redis restarted", describe=logs)
    services.stop_all()
    assert_caught_up_and_healthy()
    assert_read_models_match_the_aggregates()
    assert_matches_rebuild()
