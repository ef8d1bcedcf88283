"""Idempotency records leave the event log for a table of their own (shop_idempotency,
created by the event store's recorder beside the events; see shop/idempotency.py).

The records of the last 24 hours are copied there as the answers they were, so that a
key used just before the upgrade still replays its first answer after it:

- successes were ``IdempotencyRecorded`` events in the log (which keeps them: events
  are forever; nothing reads them any more);
- refusals were rows of ``IdempotencyRejection``, a table that goes.

A shop with no such records (a new database, the test database) copies nothing.
"""

import json
from datetime import UTC, datetime, timedelta

from django.db import migrations

OLD_RECORD_TOPIC = "shop.idempotency:IdempotencyRecorded"
TTL = timedelta(hours=24)
PAGE = 5000


def copy_live_records(apps, schema_editor):
    from shop.eventstore import get_app
    from shop.recorder import NewRecord

    Rejection = apps.get_model("shop", "IdempotencyRejection")
    cutoff = datetime.now(UTC) - TTL
    app = get_app()
    recorder = app.recorder
    last_run: dict = {}  # record id -> (notification id, the event): the key's last run
    start = 1
    while True:
        page = recorder.select_notifications(start=start, limit=PAGE,
                                             topics=[OLD_RECORD_TOPIC])
        for notification in page:
            last_run[notification.originator_id] = (
                notification.id, app.mapper.to_domain_event(notification))
        if len(page) < PAGE:
            break
        start = page[-1].id + 1
    for record_id, (position, event) in last_run.items():
        if event.timestamp <= cutoff:
            continue
        body = event.body
        if isinstance(body, dict) and "position" in body:  # it was the record's own id
            body = {**body, "position": position}
        recorder.insert_record(
            NewRecord(record_id, None, event.fingerprint, event.status,
                      json.dumps(body, default=str), (position,)),
            event.timestamp,
        )
    rejections = Rejection.objects.using(schema_editor.connection.alias)  # the migrated DB
    for row in rejections.filter(created_at__gt=cutoff):
        if row.stream_id in last_run and last_run[row.stream_id][1].timestamp > cutoff:
            continue  # a live success of the same key came first
        recorder.insert_record(
            NewRecord(row.stream_id, None, row.fingerprint, row.status, row.body),
            row.created_at,
        )


class Migration(migrations.Migration):

    dependencies = [
        ("shop", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_live_records, migrations.RunPython.noop),
        migrations.DeleteModel(name="IdempotencyRejection"),
    ]
