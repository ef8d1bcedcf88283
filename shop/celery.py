"""The Celery app: `celery -A shop worker` runs projections, `celery -A shop beat` sweeps."""

import os

from celery import Celery

from shop.logs import connect_celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Log lines of tasks carry the request id and user their sender had (shop/logs.py), and
# Celery keeps the logging Django configured.
connect_celery()
# The periodic tasks (the projections' sweep, ...) are CELERY_BEAT_SCHEDULE in settings.
