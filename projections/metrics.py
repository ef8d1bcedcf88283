"""The projections' figures for ``/metrics``, read from the database at each scrape
(so every web process reports the same, whichever answers): the log's head and each
projection's position, lag in events and seconds, and status."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from projections.status import projection_statuses
from shop.eventstore import head_position
from shop.metrics import Collector


class ProjectionCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        statuses = projection_statuses()
        head = GaugeMetricFamily(
            "shop_event_log_head", "The last notification id in the event log."
        )
        head.add_metric([], statuses[0].head if statuses else head_position())
        yield head
        labels = ["projection"]
        position = GaugeMetricFamily(
            "shop_projection_position", "The last notification id the projection processed.",
            labels=labels,
        )
        lag_events = GaugeMetricFamily(
            "shop_projection_lag_events", "Notifications after the projection's position.",
            labels=labels,
        )
        lag_seconds = GaugeMetricFamily(
            "shop_projection_lag_seconds",
            "Age of the oldest event the projection has not processed (0 when caught up).",
            labels=labels,
        )
        failed = GaugeMetricFamily(
            "shop_projection_failed",
            "1 when the projection is parked at an event its handler cannot apply.",
            labels=labels,
        )
        for status in statuses:
            position.add_metric([status.name], status.position)
            lag_events.add_metric([status.name], status.lag_events)
            if status.lag_seconds is not None:
                lag_seconds.add_metric([status.name], status.lag_seconds)
            failed.add_metric([status.name], 1 if status.is_failed else 0)
        yield from (position, lag_events, lag_seconds, failed)
