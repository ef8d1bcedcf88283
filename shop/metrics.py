"""``GET /metrics``: Prometheus text for operators (official ``prometheus-client``).

Two kinds of figures:

- what happens in the web processes, counted as it happens: commands by name and
  outcome (a counter and a latency histogram) and query latency, recorded by
  :class:`MetricsMiddleware`. With several gunicorn workers, set
  ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, the same for every worker, before
  they start): each worker writes its values there and a scrape sums them all, so
  whichever worker answers, the counts are the whole server's.
- state that lives in the database (each projection's position, lag and status, the
  log's head), computed at scrape time by collectors that modules register from their
  ``AppConfig.ready()`` with :func:`collect_at_scrape` (the kernel knows no module).

Access: a staff session, or ``Authorization: Bearer <METRICS_TOKEN>`` when that
environment variable is set; anyone else gets 401 (no credentials) or 403.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

from shop.api import error_body

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

COMMANDS = Counter(
    "shop_commands", "Commands handled, by command and outcome (ok or the error code).",
    ["command", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "shop_command_duration_seconds", "Time to handle a command, by command and outcome.",
    ["command", "outcome"], buckets=LATENCY_BUCKETS,
)
QUERY_SECONDS = Histogram(
    "shop_query_duration_seconds", "Time to answer a query, by query and outcome.",
    ["query", "outcome"], buckets=LATENCY_BUCKETS,
)

COMMAND_PREFIX, QUERY_PREFIX = "/api/commands/", "/api/queries/"


# --- what modules contribute --------------------------------------------------------


class Collector:
    """A collector of figures read at scrape time (``collect`` yields metric families)."""

    def collect(self) -> Iterable[Metric]:  # pragma: no cover - an interface
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return ()  # registering must not read the database


_scrape_collectors: dict[str, Callable[[], Collector]] = {}


def collect_at_scrape(name: str, make: Callable[[], Collector]) -> None:
    """Add a module's collector (built fresh for each scrape) under ``name``."""
    _scrape_collectors[name] = make


# --- counting requests ----------------------------------------------------------------


def outcome(response: HttpResponse) -> str:
    """"ok" below 400; else the body's error ``code`` (e.g. insufficient_stock)."""
    if response.status_code < 400:
        return "ok"
    data = getattr(response, "data", None)
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return data["code"]
    return str(response.status_code)


class MetricsMiddleware:
    """Times every command and query by its URL name (``order-place``, ``order-list``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        if match is None or not match.url_name:
            return response
        elapsed = time.perf_counter() - started
        try:
            if request.path.startswith(COMMAND_PREFIX) and request.method == "POST":
                labels = (match.url_name, outcome(response))
                COMMANDS.labels(*labels).inc()
                COMMAND_SECONDS.labels(*labels).observe(elapsed)
            elif request.path.startswith(QUERY_PREFIX) and request.method in ("GET", "HEAD"):
                QUERY_SECONDS.labels(match.url_name, outcome(response)).observe(elapsed)
        except Exception:  # e.g. PROMETHEUS_MULTIPROC_DIR missing: the answer still goes
            logger.warning("Could not record a request's metrics", exc_info=True)
        return response


# --- the endpoint ---------------------------------------------------------------------


class _ThisProcess:
    """The default registry's metrics, when not in multiprocess mode."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return ()


class _Replicas(Collector):
    """Each read replica's replay lag (``READ_REPLICA_URLS``), measured at the scrape."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from shop.databases import replica_lags

        lag = GaugeMetricFamily(
            "shop_read_replica_lag_seconds",
            "How far the read replica's replay is behind the read primary.",
            labels=["replica"])
        up = GaugeMetricFamily("shop_read_replica_up", "1 when the read replica answers.",
                               labels=["replica"])
        for alias, seconds in replica_lags(fresh=True).items():
            up.add_metric([alias], 0 if seconds is None else 1)
            if seconds is not None:
                lag.add_metric([alias], seconds)
        yield from (lag, up)


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_Replicas())
    for make in _scrape_collectors.values():
        registry.register(make())
    return registry


def _error(status: int, code: str, detail: str, **headers: str) -> JsonResponse:
    response = JsonResponse(error_body(code, detail), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read the metrics; else the 401/403 answer."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    ):
        return None
    user = request.user
    if user.is_authenticated and user.is_active and user.is_staff:
        return None
    if user.is_authenticated:
        return _error(403, "permission_denied", "Metrics are for staff or the metrics token.")
    detail = ("Log in as staff or send Authorization: Bearer <METRICS_TOKEN>."
              if header else "Log in as staff or send the metrics token.")
    return _error(401, "not_authenticated", detail, **{"WWW-Authenticate": "Bearer"})


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        body = generate_latest(scrape_registry())
    except Exception:  # a database that cannot be read: say so, don't 500
        logger.warning("Metrics: a collector failed", exc_info=True)
        return _error(503, "service_unavailable", "A database is unreachable; retry shortly.",
                      **{"Retry-After": "1"})
    return HttpResponse(body if request.method == "GET" else b"",
                        content_type=CONTENT_TYPE_LATEST)

