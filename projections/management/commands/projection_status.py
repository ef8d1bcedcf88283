"""Position, head and lag of each projection; exits 1 when any projection has failed."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from projections.status import ProjectionStatus, projection_statuses

COLUMNS = (
    ("name", "PROJECTION"),
    ("position", "POSITION"),
    ("head", "HEAD"),
    ("lag_events", "LAG"),
    ("lag_seconds", "LAG_S"),
    ("status", "STATUS"),
    ("error_position", "ERROR_AT"),
    ("last_error", "LAST_ERROR"),
)


def _cell(key: str, value) -> str:
    if value is None:
        return "-" if key != "lag_seconds" else "?"
    if key == "lag_seconds":
        return f"{value:.1f}"
    return str(value)


class Command(BaseCommand):
    help = "Show each projection's position, the log head, the lag and any failure."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, **options):
        statuses = projection_statuses()
        if options["json"]:
            self.stdout.write(json.dumps([s.as_dict() for s in statuses], indent=2,
                                         default=_json_default))
        else:
            self._table(statuses)
        failed = [s.name for s in statuses if s.is_failed]
        if failed:
            raise CommandError(f"Failed projections: {', '.join(failed)}", returncode=1)

    def _table(self, statuses: list[ProjectionStatus]) -> None:
        if not statuses:
            self.stdout.write("No projections are registered.")
            return
        rows = [[header for _, header in COLUMNS]]
        rows += [[_cell(key, getattr(s, key)) for key, _ in COLUMNS] for s in statuses]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
