from django.db import models


class IdempotencyRejection(models.Model):
    """A rejected command's outcome under an ``Idempotency-Key`` (see
    ``shop.idempotency``): kept here, not in the event log, which a rejected command
    must leave exactly as it was. One row per user and key (``stream_id``, as the
    records' stream in the event store). ``body`` is the answer's JSON text, not a
    ``JSONField``: PostgreSQL's jsonb would reorder its keys, and a replay must be
    the first answer byte for byte."""

    stream_id = models.UUIDField(primary_key=True)
    fingerprint = models.TextField()
    status = models.PositiveSmallIntegerField()
    body = models.TextField()
    created_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.stream_id}: {self.status}"
