"""Rate limits with DRF's throttles, counted in the cache every web process shares
(Redis in production, see ``CACHES``), with rates from ``THROTTLE_RATES``.

If Redis cannot be reached the counters fall back to this process's memory for a few
seconds at a time, so a Redis outage loosens the limits but never fails a request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class FailoverCache:
    """The ``default`` cache, or the process-local ``local`` one while it is down."""

    pause_seconds = 5.0

    def __init__(self) -> None:
        self._down_until = 0.0

    def _call(self, method: str, *args: Any) -> Any:
        if time.monotonic() >= self._down_until:
            try:
                return getattr(caches["default"], method)(*args)
            except (RedisError, OSError) as exc:
                logger.warning("Throttle counters fall back to local memory: %s", exc)
                self._down_until = time.monotonic() + self.pause_seconds
        return getattr(caches["local"], method)(*args)

    def get(self, key: str, default: Any = None) -> Any:
        return self._call("get", key, default)

    def set(self, key: str, value: Any, timeout: float | None = None) -> Any:
        return self._call("set", key, value, timeout)


SHARED_COUNTERS = FailoverCache()


class SharedRateThrottle(SimpleRateThrottle):
    """A DRF throttle counted in :data:`SHARED_COUNTERS`, its rate read from the
    current settings (so tests can override ``DEFAULT_THROTTLE_RATES``)."""

    cache = SHARED_COUNTERS

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserThrottle(SharedRateThrottle, UserRateThrottle):
    """The generous limit on every endpoint: per user, or per IP for anonymous calls."""

    scope = "user"
