"""The kernel's own periodic work (Celery beat, see ``shop/celery.py``)."""

from celery import shared_task

from shop import idempotency


@shared_task(name="shop.delete_expired_idempotency_records")
def delete_expired_idempotency_records() -> int:
    """Drop idempotency records older than 24 hours (see ``shop.idempotency``)."""
    return idempotency.delete_expired()
