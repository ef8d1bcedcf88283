"""Tables used only by the benchmark."""

from django.db import models


class BenchRow(models.Model):
    """One small table: the baseline endpoints read five rows of it or insert one."""

    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class BenchCustomerOrder(models.Model):
    """Which orders a customer placed, for the "traditional" write-side history.

    The event store has no query by customer; a traditional application would have an
    indexed orders table for that. This gives the write-side path that index for free,
    so the comparison only measures assembling the history from the aggregates.
    """

    customer_id = models.IntegerField(db_index=True)
    order_id = models.UUIDField(unique=True)

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.order_id}"
