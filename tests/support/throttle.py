"""Throttle rates for a test: ``override_settings`` of some scopes (``None``: no limit)."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings


def throttle_rates(**scopes: str | None) -> override_settings:
    merged = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **scopes}
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK,
                                             "DEFAULT_THROTTLE_RATES": merged})
