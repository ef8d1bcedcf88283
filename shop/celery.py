"""The Celery app: `celery -A shop worker` runs projections, `celery -A shop beat` sweeps."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The periodic tasks (the projections' sweep, ...) are CELERY_BEAT_SCHEDULE in settings.


def lower_priority(increment: int) -> None:
    """Lower this process's CPU priority by ``increment``, as ``nice`` does (0: leave it)."""
    if increment > 0 and hasattr(os, "nice"):
        os.nice(increment)


@worker_process_init.connect
def _worker_priority(**_: object) -> None:
    """A worker's pool processes yield the CPU to the web processes (``WORKER_NICE``).

    On a machine that commands keep busy, a client waits for its command, while a
    projection only catches up a little later, and with more events per catch-up,
    which costs less per event. When the machine has CPU to spare, priority changes
    nothing.
    """
    from django.conf import settings

    lower_priority(settings.WORKER_NICE)
