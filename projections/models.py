"""Read-model tables and the checkpoints that say how far each projection has read.

Read models have no foreign keys into the write side: they are keyed by aggregate id
and written only by projectors (see ``projections/projectors.py``).
"""

from django.db import models


class Checkpoint(models.Model):
    """How far a projection has processed an upstream application's notification log.

    ``position`` is the notification id up to which every event has been processed,
    relevant to this projection or not; it is advanced in the same transaction as the
    read-model rows it covers. The row is also the projection's lock: a worker holds
    it ``FOR UPDATE`` while it processes a batch.
    """

    OK, FAILED = "ok", "failed"
    STATUS_CHOICES = [(OK, "ok"), (FAILED, "failed")]

    projection = models.CharField(max_length=100)
    upstream = models.CharField(max_length=100, default="shop")
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=OK)
    last_error = models.TextField(blank=True, default="")
    error_position = models.BigIntegerField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projection", "upstream"], name="one_checkpoint_per_projection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projection}@{self.position}"
