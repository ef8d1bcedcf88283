"""What the personal-data commands share: finding the customer by name."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from shop.accounts.services import username_resolve


def customer_named(username: str) -> User:
    """The user ``username`` names, compared as logins compare names; a clear error if
    there is none."""
    user = User.objects.filter(username=username_resolve(username)).first()
    if user is None:
        raise CommandError(f"No user is named {username!r}.")
    return user
