"""A tracking recorder backed by the Django ``Checkpoint`` model.

It subclasses the library's ``TrackingRecorder`` so that the library's own contract
tests apply, and it writes through Django's connection, so a tracking record commits
in the same transaction as the read-model rows it covers.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder

from projections.models import Checkpoint
from shop.databases import READ, read_connection

_TABLE = read_connection.ops.quote_name(Checkpoint._meta.db_table)


class DjangoTrackingRecorder(TrackingRecorder):
    def __init__(self, projection: str) -> None:
        self.projection = projection

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record that everything up to ``tracking.notification_id`` is processed.

        Positions only move forward: recording the same or an earlier position is an
        ``IntegrityError`` (the event was processed already), as the contract says.
        """
        # The common case, one statement: the row exists and is behind. (Plain SQL: a
        # catch-up runs after every command, and the ORM compiles each query anew.)
        with read_connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_TABLE} SET position = %s, updated_at = %s"
                " WHERE projection = %s AND upstream = %s AND position < %s",
                [tracking.notification_id, timezone.now(), self.projection,
                 tracking.application_name, tracking.notification_id],
            )
            if cursor.rowcount:
                return
        with transaction.atomic(using=READ):
            checkpoint, _ = Checkpoint.objects.select_for_update().get_or_create(
                projection=self.projection,
                upstream=tracking.application_name,
                defaults={"position": 0},
            )
            if checkpoint.position >= tracking.notification_id:
                raise IntegrityError(
                    f"{self.projection} has already processed "
                    f"{tracking.application_name} up to {checkpoint.position}"
                )
            checkpoint.position = tracking.notification_id
            checkpoint.save(update_fields=["position", "updated_at"])

    def max_tracking_id(self, application_name: str) -> int | None:
        return Checkpoint.objects.position_of(self.projection, application_name) or None
