"""Money as the back office shows it: in the shop's currency (``SHOP_CURRENCY``), the
way the locale (``LANGUAGE_CODE``) writes it: "€1,234.50" in ``en-us``."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency
from django.conf import settings
from django.utils.translation import to_locale


def locale() -> str:
    return to_locale(settings.LANGUAGE_CODE)


def money(value: Decimal | float | int | str | None) -> str:
    if value is None or value == "":
        return "—"
    return format_currency(Decimal(value), settings.SHOP_CURRENCY, locale=locale())


def money_whole(value: Decimal | float | int) -> str:
    """Without the cents: an axis's ticks ("€1,200")."""
    return format_currency(Decimal(value), settings.SHOP_CURRENCY, locale=locale(),
                           format="¤#,##0", currency_digits=False)
