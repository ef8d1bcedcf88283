"""``seed_demo`` creates a superuser whose password is in the README: with DEBUG off
it refuses unless given ``--force`` (issue: it seeded a production database)."""

from __future__ import annotations

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
