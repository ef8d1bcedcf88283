"""The Celery app: `celery -A shop worker` runs projections, `celery -A shop beat` sweeps."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The sweep: trigger every projection every couple of seconds, so a lost message, a
# broker outage or a crashed worker delays the read side but never loses an event.
app.conf.beat_schedule = {
    "sweep-projections": {
        "task": "projections.sweep",
        "schedule": float(os.environ.get("PROJECTION_SWEEP_SECONDS", "2")),
    },
    # Idempotency records live 24 hours; drop the expired ones (a bounded batch).
    "delete-expired-idempotency-records": {
        "task": "shop.delete_expired_idempotency_records",
        "schedule": 600.0,
    },
}
