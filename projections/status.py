"""How far behind each projection is: one function, shared by the ``projection_status``
command, the query API's ``projections/`` endpoint and the admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from projections.models import Checkpoint
from projections.registry import PROJECTORS
from shop.eventstore import ShopApplication, get_app, head_position


@dataclass(frozen=True)
class ProjectionStatus:
    """How far one projection has read the log, and why it stopped if it did."""

    name: str
    position: int  # the last notification id processed
    head: int  # the last notification id in the log
    lag_events: int  # exact number of notifications after ``position``
    # Age of the oldest unprocessed event: 0.0 when caught up, None if undecodable.
    lag_seconds: float | None
    status: str  # "ok" or "failed"
    last_error: str  # one line: the exception that parked it, "" when none
    error_position: int | None
    failures: int
    retry_at: datetime | None
    updated_at: datetime | None
    traceback: str  # the full stored error text
    checkpoint_id: int | None = field(default=None, repr=False)  # its admin page

    @property
    def is_failed(self) -> bool:
        return self.status == Checkpoint.FAILED

    def as_dict(self) -> dict[str, Any]:
        """The reported fields (for JSON), without the checkpoint row's id."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}


def projection_statuses() -> list[ProjectionStatus]:
    """Each registered projection's status, in name order."""
    app = get_app()
    head = head_position()
    checkpoints = {c.projection: c for c in Checkpoint.objects.among(PROJECTORS)}
    now = timezone.now()
    statuses = []
    for name in sorted(PROJECTORS):
        checkpoint = checkpoints.get(name) or Checkpoint(projection=name)
        position = checkpoint.position
        behind = head > position
        statuses.append(
            ProjectionStatus(
                name=name,
                position=position,
                head=head,
                lag_events=count_notifications_after(app, position) if behind else 0,
                lag_seconds=_lag_seconds(app, position, now) if behind else 0.0,
                status=checkpoint.status,
                last_error=error_summary(checkpoint.last_error),
                error_position=checkpoint.error_position,
                failures=checkpoint.failures,
                retry_at=checkpoint.retry_at,
                updated_at=checkpoint.updated_at,
                traceback=checkpoint.last_error,
                checkpoint_id=checkpoint.pk,
            )
        )
    return statuses


def health_of_projections() -> tuple[dict[str, Any], bool]:
    """The projections' part of ``/api/health/``: each one's lag and status.

    Unhealthy (the answer is "degraded") when a projection is parked, or when one's
    oldest unprocessed event is older than ``PROJECTION_LAG_ALERT_SECONDS`` (e.g. no
    worker runs), or that age cannot be read.
    """
    limit = settings.PROJECTION_LAG_ALERT_SECONDS
    statuses = projection_statuses()
    worst = max(statuses, key=lambda s: (s.is_failed, s.lag_events), default=None)
    failed = [s.name for s in statuses if s.is_failed]
    lagging = [
        s.name for s in statuses
        if s.lag_events and (s.lag_seconds is None or s.lag_seconds > limit)
    ]
    report = {
        "worst_lag_events": worst.lag_events if worst else 0,
        "worst_lag_seconds": worst.lag_seconds if worst else 0,
        "failed": failed,
        "lagging": lagging,
        "lag_alert_seconds": limit,
        "each": {
            s.name: {"position": s.position, "head": s.head, "lag_events": s.lag_events,
                     "lag_seconds": s.lag_seconds, "status": s.status}
            for s in statuses
        },
    }
    return report, not failed and not lagging


def error_summary(text: str) -> str:
    """The line of a stored traceback that says what went wrong: its last one.

    (A traceback's first line is "Traceback (most recent call last):", and the
    stored text may be cut at the front.)
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def count_notifications_after(app: ShopApplication, position: int) -> int:
    """Exact count of notifications with an id above ``position``.

    Counted in SQL on the event store's own connection: the recorders offer no count,
    and paging through ``select_notifications`` would read every event.
    """
    recorder: Any = app.recorder
    table = recorder.events_table_name
    if app.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        from psycopg.sql import SQL, Identifier

        statement = SQL("SELECT COUNT(*) AS n FROM {}.{} WHERE notification_id > %s").format(
            Identifier(recorder.datastore.schema), Identifier(table)
        )
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (position,))
            row = cursor.fetchone()
            return int(row["n"])
    # SQLite: the notification id is the table's rowid.
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE rowid > ?", (position,))  # noqa: S608
        return int(cursor.fetchone()[0])


def _lag_seconds(app: ShopApplication, position: int, now: datetime) -> float | None:
    """Age of the oldest event the projection has not processed yet."""
    notifications = app.recorder.select_notifications(
        start=position, limit=1, inclusive_of_start=False
    )
    if not notifications:
        return 0.0
    try:
        timestamp = app.mapper.to_domain_event(notifications[0]).timestamp
    except Exception:
        return None
    return max((now - timestamp).total_seconds(), 0.0)
