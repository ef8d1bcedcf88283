"""The projection runner: reads the notification log after a checkpoint and applies it.

``catch_up`` processes a projection batch by batch, one transaction per batch: lock
the checkpoint row, read the next notifications straight from the recorder, apply the
projector's handlers, advance the checkpoint, commit. On PostgreSQL a rebuild runs the
very same batch step into a shadow beside the live read model (``projections/shadow.py``,
blue/green); ``rebuild`` here, for SQLite's small data, runs it from position zero
inside ONE transaction, so queries keep reading the old rows until it commits.

Why reading up to the head is safe: the PostgreSQL recorder locks the events table
for each insert, so notification ids commit in order. Once the head (largest id) is
read, every smaller id is committed or permanently burned (a gap), never pending.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, NamedTuple

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import Model
from django.utils import timezone
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from projections.models import Checkpoint
from projections.recorder import DjangoTrackingRecorder
from shop.databases import READ, read_connection
from shop.eventstore import ShopApplication, get_app
from shop.metadata import LEGACY, Metadata

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Any], None]


class Logged(NamedTuple):
    """An event as the runner hands it to a projector: its position in the log, the
    event, and its metadata (who, how, which request; ``shop.metadata``)."""

    notification_id: int
    event: DomainEvent
    metadata: Metadata = LEGACY

# The PostgreSQL channel on which the runner announces "<projection>:<position>".
ADVANCED_CHANNEL = "projection_advanced"

# The database failing under a batch (connection dropped, lock or statement timeout,
# deadlock) is not the event's fault: such errors propagate, the task fails and the
# next trigger or sweep retries. Parking is for events that a handler cannot apply.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)


def handles(*event_classes: type[DomainEvent]) -> Callable[[Handler], Handler]:
    """Mark a projector method as the handler of the given event classes."""

    def mark(method: Handler) -> Handler:
        method._handles = event_classes  # type: ignore[attr-defined]
        return method

    return mark


class Projector:
    """One read model: a handler per event type, bulk writes, and how to empty it.

    Subclasses set ``name`` and ``models`` (the tables it owns, emptied by a rebuild)
    and decorate one method per event class with ``@handles(...)``. A batch is applied
    by ``apply(events)``, ``events`` being ``Logged`` items (or ``(notification_id,
    event)`` pairs): ``begin()``, ``preload(events)`` (read the rows the batch touches),
    each handler in log order with ``self.notification_id`` the id of the event it
    handles (an order's number is its ``Order.Placed``'s) and ``self.metadata`` its
    metadata, then ``flush()`` (write the changed rows in bulk), once per batch.
    Handlers must be idempotent and keyed by aggregate id.
    """

    name: ClassVar[str]
    models: ClassVar[Sequence[type[Model]]] = ()
    handlers: ClassVar[dict[type, Handler]]
    notification_id: int = 0
    metadata: Metadata = LEGACY

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for event_class in getattr(attr, "_handles", ()):
                    cls.handlers[event_class] = attr

    @classmethod
    def topics(cls) -> list[str]:
        return [get_topic(event_class) for event_class in cls.handlers]

    def apply(self, events: Iterable[tuple]) -> None:
        logged = [Logged(*item) for item in events]
        self.begin()
        self.preload([item.event for item in logged])
        self.handle(logged)
        self.flush()

    def handle(self, events: Iterable[Logged]) -> None:
        """Call each event's handler in log order, ``notification_id`` and ``metadata``
        set for it."""
        for self.notification_id, event, self.metadata in events:
            self.handlers[type(event)](self, event)

    def begin(self) -> None:
        """Start a batch: clear anything buffered by an earlier (failed) batch."""

    def preload(self, events: list[DomainEvent]) -> None:
        """Read every row the batch's events touch (one query per table), so the
        handlers change rows in memory."""

    def flush(self) -> None:
        """Write what the handlers buffered. Called once at the end of each batch."""

    def reset(self) -> None:
        """Empty the read model (the rebuild replays the whole log into it)."""
        for model in self.models:
            model.objects.all().delete()


class ProjectionFailed(Exception):
    """A handler raised: the projection is parked before the failing event."""

    def __init__(self, projection: str, notification_id: int, error: BaseException):
        self.projection = projection
        self.notification_id = notification_id
        self.error = error
        super().__init__(
            f"{projection} failed at notification {notification_id}: {error!r}"
        )


@dataclass
class Progress:
    position: int
    head: int
    processed: int


def _process_batch(
    projector: Projector,
    checkpoint: Checkpoint,
    app: ShopApplication,
    limit: int,
    stop: int | None = None,
    announce: bool = True,
    savepoint: bool = True,
) -> tuple[int, int]:
    """Apply the next batch after ``checkpoint.position``; return (processed, head).

    Reads up to the log's head (or ``stop``, when given). Must run inside a
    transaction holding the checkpoint row. Advances the checkpoint (in memory and
    through the tracking recorder) to the last id covered.
    """
    head = app.recorder.max_notification_id() or 0
    if stop is not None:
        head = min(head, stop)
    if head <= checkpoint.position:
        return 0, head
    notifications = app.recorder.select_notifications(
        start=checkpoint.position,
        stop=head,
        limit=limit,
        topics=projector.topics(),
        inclusive_of_start=False,
    )
    events = _decode(projector, app, notifications)
    _apply_events(projector, events, savepoint=savepoint)
    # A short page means everything up to the head was read (irrelevant events too).
    covered = notifications[-1].id if len(notifications) == limit else head
    DjangoTrackingRecorder(projector.name).insert_tracking(
        Tracking(application_name=app.name, notification_id=covered)
    )
    checkpoint.position = covered
    if announce:  # a shadow being rebuilt must not wake the live model's waiters
        if events:  # nor log its batches: a replay is not news
            log_batch(projector.name, events, covered)
        _announce(projector.name, covered)
    return len(notifications), head


def _decode(projector: Projector, app: ShopApplication,
            notifications: Sequence[Any]) -> list[Logged]:
    """The batch's events (each person's data key read once for the batch); one that
    cannot be read parks the projection before it."""
    try:
        decoded = app.mapper.decode_many(notifications)
    except Exception:
        for notification in notifications:  # which one
            try:
                app.mapper.decode(notification)
            except Exception as exc:
                raise ProjectionFailed(projector.name, notification.id, exc) from exc
        raise
    return [Logged(notification.id, event, metadata)
            for notification, (event, metadata) in zip(notifications, decoded, strict=True)]


def log_batch(projection: str, events: list[Logged], position: int) -> None:
    """One log line per batch, naming the requests whose events it applied, so a
    command's request id leads from its own log lines to the read models'."""
    request_ids = sorted({item.metadata.request_id for item in events
                          if item.metadata.request_id})
    logger.info(
        "%s applied %d events up to position %d (requests: %s)",
        projection, len(events), position, ", ".join(request_ids) or "none",
        extra={"projection": projection, "position": position, "events": len(events),
               "request_ids": request_ids},
    )


def _announce(name: str, position: int) -> None:
    """Tell ``wait_for`` waiters of the advance; PostgreSQL delivers it at commit."""
    if read_connection.vendor == "postgresql":
        with read_connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [ADVANCED_CHANNEL, f"{name}:{position}"])


class _RetryWithSavepoint(Exception):
    """A batch applied without a savepoint failed in the database: the transaction is
    unusable, so the batch is applied again in a new one, within a savepoint."""


def _apply_events(
    projector: Projector, events: list[Logged], *, savepoint: bool = True
) -> None:
    """Apply a batch. A failing event becomes ``ProjectionFailed``, naming it.

    Locating the failing event re-applies the batch one event at a time in the same
    transaction, which must still be usable: a handler's Python error leaves it so, a
    database error does not. So the batch runs within a savepoint, or (``savepoint``
    False: two round trips fewer for every catch-up) without one, at the price of
    ``_RetryWithSavepoint`` after a database error.
    """
    if not savepoint:
        try:
            projector.apply(events)
            return
        except TRANSIENT_DATABASE_ERRORS:
            raise
        except DatabaseError as exc:
            raise _RetryWithSavepoint() from exc
        except Exception as exc:
            raise _locate_failure(projector, events, exc) from exc
    try:
        # A savepoint: a failed batch leaves the transaction usable.
        with transaction.atomic(using=READ):
            projector.apply(events)
    except TRANSIENT_DATABASE_ERRORS:
        raise
    except Exception as exc:
        raise _locate_failure(projector, events, exc) from exc


def _locate_failure(
    projector: Projector, events: list[Logged], exc: Exception
) -> ProjectionFailed:
    """Re-apply the batch one event at a time to find the first event that fails.

    The caller's transaction is rolled back afterwards; ``_park`` then commits the
    events before the failing one, so the projection stops exactly in front of it.
    """
    for item in events:
        try:
            with transaction.atomic(using=READ):
                projector.apply([item])
        except TRANSIENT_DATABASE_ERRORS:
            raise
        except Exception as single_exc:
            return ProjectionFailed(projector.name, item.notification_id, single_exc)
    return ProjectionFailed(projector.name, events[0][0] if events else 0, exc)


def catch_up(projector: Projector, *, batch_size: int | None = None) -> int:
    """Process everything appended after the projection's checkpoint.

    Returns the number of events applied. A failing event parks the projection
    (status failed, retried with back-off) and leaves the checkpoint before it.
    """
    limit = batch_size or settings.PROJECTION_BATCH_SIZE
    app = get_app()
    total = 0
    savepoint = False  # until a batch fails in the database (see _apply_events)
    while True:
        try:
            with transaction.atomic(using=READ):
                checkpoint = Checkpoint.objects.lock(projector.name)
                if checkpoint.is_failed and (
                    checkpoint.retry_at and checkpoint.retry_at > timezone.now()
                ):
                    return total
                processed, _head = _process_batch(
                    projector, checkpoint, app, limit, savepoint=savepoint
                )
                if checkpoint.is_failed:
                    _mark_recovered(checkpoint)
        except _RetryWithSavepoint:
            savepoint = True
            continue
        except ProjectionFailed as failure:
            total += _park(projector, failure, app)
            return total
        total += processed
        if processed < limit:
            return total


def _park(projector: Projector, failure: ProjectionFailed, app: ShopApplication) -> int:
    """Commit what precedes the failing event, then record the failure."""
    processed = 0
    with transaction.atomic(using=READ):
        checkpoint = Checkpoint.objects.lock(projector.name)
        if failure.notification_id <= checkpoint.position:
            # Another worker has applied that event meanwhile: nothing to park.
            return 0
        before = failure.notification_id - 1
        if before > checkpoint.position:
            # The failure lies within one batch, so this is at most a batch too.
            processed, _ = _process_batch(
                projector, checkpoint, app, limit=before - checkpoint.position, stop=before
            )
        checkpoint.status = Checkpoint.FAILED
        checkpoint.failures += 1
        checkpoint.error_position = failure.notification_id
        checkpoint.last_error = "".join(
            traceback.format_exception(failure.error)
        )[-4000:]
        checkpoint.retry_at = timezone.now() + retry_delay(checkpoint.failures)
        checkpoint.save()
    logger.error("%s", failure)
    return processed


def retry_delay(failures: int) -> timedelta:
    """Back-off between automatic retries of a failed projection: 1 s doubling to 5 min."""
    return timedelta(seconds=min(2 ** max(failures - 1, 0), 300))


def _mark_recovered(checkpoint: Checkpoint) -> None:
    checkpoint.status = Checkpoint.OK
    checkpoint.failures = 0
    checkpoint.error_position = None
    checkpoint.last_error = ""
    checkpoint.retry_at = None
    checkpoint.save(
        update_fields=[
            "status", "failures", "error_position", "last_error", "retry_at", "updated_at"
        ]
    )


def retry_now(name: str) -> None:
    """Let a failed projection retry at once (after a fix), from the failing event."""
    Checkpoint.objects.of(name).update(retry_at=None)


def rebuild(
    projector: Projector,
    *,
    batch_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> int:
    """Replay the whole log into the projector's read model, in one transaction.

    Queries keep answering from the old rows until the commit switches them all at
    once; events appended meanwhile are caught up before the commit; an interrupted
    rebuild rolls back and leaves the old read model serving. Memory stays flat: the
    log is streamed in batches.
    """
    limit = batch_size or settings.PROJECTION_REBUILD_BATCH_SIZE
    app = get_app()
    processed_total = 0
    with transaction.atomic(using=READ):
        checkpoint = Checkpoint.objects.lock(projector.name)
        projector.reset()
        checkpoint.position = 0
        Checkpoint.objects.filter(pk=checkpoint.pk).update(position=0)
        while True:
            processed, head = _process_batch(projector, checkpoint, app, limit)
            processed_total += processed
            if progress:
                progress(Progress(checkpoint.position, head, processed_total))
            if processed < limit:
                break
        _mark_recovered(checkpoint)
    return processed_total


def wait_for(name: str, position: int, timeout: float) -> int:
    """Wait until the projection has processed ``position``; return its position.

    On PostgreSQL the waiter sleeps on ``LISTEN``: the runner announces each advance
    with ``NOTIFY`` in the transaction that makes it, so the waiter wakes right after
    the commit and reads nothing while it waits. Elsewhere (SQLite, or inside an open
    transaction, where LISTEN only starts at commit) it polls with a short back-off.
    """
    if not math.isfinite(timeout):  # a NaN deadline would never pass: spin forever
        raise ValueError(f"The timeout must be a finite number of seconds, not {timeout}.")
    current = projection_position(name)
    if current >= position or timeout <= 0:
        return current
    if read_connection.vendor == "postgresql" and not read_connection.in_atomic_block:
        return _wait_listening(name, position, timeout)
    return _wait_polling(name, position, timeout)


def _wait_listening(name: str, position: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    read_connection.ensure_connection()
    with read_connection.cursor() as cursor:
        cursor.execute(f"LISTEN {ADVANCED_CHANNEL}")
    try:
        current = projection_position(name)  # an advance before LISTEN is seen here
        while current < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Re-read now and then as well, in case a notification was missed.
            for notify in read_connection.connection.notifies(timeout=min(remaining, 0.5)):
                projection, _, advanced_to = notify.payload.rpartition(":")
                if projection == name and int(advanced_to) >= position:
                    return int(advanced_to)
            current = projection_position(name)
        return current
    finally:
        with read_connection.cursor() as cursor:
            cursor.execute(f"UNLISTEN {ADVANCED_CHANNEL}")


def _wait_polling(name: str, position: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        current = projection_position(name)
        if current >= position or time.monotonic() >= deadline:
            return current
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 0.02)


def projection_position(name: str) -> int:
    return Checkpoint.objects.position_of(name)
