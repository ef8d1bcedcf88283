"""The two databases: the write side's (``default``) and the read side's (``read``).

``DATABASE_URL`` holds the event store, users, tokens, idempotency records and the
other write-side tables. ``READ_DATABASE_URL`` holds the read side: every read model,
the projections' checkpoints and a rebuild's shadow tables (the apps in
``READ_SIDE_APPS``). Unset, the ``read`` alias connects to ``DATABASE_URL``'s database:
one database, as before, still reached through the ``read`` alias, so the code paths
are the same in both setups.

Django's multi-database support does the routing: ``ReadSideRouter`` sends the
read-side apps' models to ``read`` and the rest to ``default``, and lets each app's
migrations run only against its own database (both, when the two aliases name the
same database). Code that talks SQL on the read side uses ``read_connection`` and
``transaction.atomic(using=READ)``: never Django's default ``connection``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.connection import ConnectionProxy

WRITE = DEFAULT_DB_ALIAS
READ = "read"

# The apps whose tables live in the read database.
READ_SIDE_APPS = frozenset({"projections"})

# Django's ``connection``, for the read side's database.
read_connection = ConnectionProxy(connections, READ)


def split() -> bool:
    """Whether the read side has a database of its own (decided by the settings, from
    the URLs: the test runner renames the databases as it creates them)."""
    return settings.READ_DATABASE_SPLIT


def alias_for_app(app_label: str) -> str:
    return READ if app_label in READ_SIDE_APPS else WRITE


class ReadSideRouter:
    """Read-side apps to ``read``, everything else to ``default``."""

    def db_for_read(self, model, **hints) -> str:
        return alias_for_app(model._meta.app_label)

    def db_for_write(self, model, **hints) -> str:
        return alias_for_app(model._meta.app_label)

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # Read models hold ids, never foreign keys into the write side.
        return alias_for_app(obj1._meta.app_label) == alias_for_app(obj2._meta.app_label)

    def allow_migrate(self, db: str, app_label: str, model_name=None, **hints) -> bool:
        # One database behind both aliases: migrating either creates every table.
        return db == alias_for_app(app_label) or not split()
