"""``seed_demo`` creates a superuser whose password is in the README: with DEBUG off
it refuses unless given ``--force`` (issue: it seeded a production database)."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from shop.eventstore import head_position

pytestmark = pytest.mark.django_db


def test_seed_demo_refuses_without_debug(event_store, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--force"):
        call_command("seed_demo")
    assert not User.objects.exists()
    assert head_position() == 0


def test_seed_demo_counts_the_events_each_projection_applied(event_store, settings):
    """The projections run after each command (in-process here, as embedded): the
    report counts what they applied during the seeding, not "0 events applied"."""
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    head = head_position()
    assert head > 50
    reported = dict(re.findall(r"Projection (\w+): (\d+) events applied", out.getvalue()))
    assert reported == {name: str(head) for name in
                        ("activity", "order_history", "product_catalog", "sales")}
    assert f"(up to position {head})" in out.getvalue()

    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    assert "nothing written" in again.getvalue()
    assert set(re.findall(r"(\d+) events applied", again.getvalue())) == {"0"}
