"""Registers every page of the back office (Django's admin imports each app's
``admin`` module; the pages themselves live one module per part of the shop)."""

from backoffice import accounts, catalog, projections, shipping  # noqa: F401
