"""The unit of work: one command's transaction on the event store, start to finish.

A command service receives a ``UnitOfWork`` and runs its whole decision inside it::

    @retry_on_conflict
    def product_restock(*, uow: UnitOfWork, product_id, quantity) -> Saved:
        with uow:                                 # the transaction starts (and the
            uow.lock(product_id)                  #   key's lock, for a keyed command)
            product = uow.load(product_id, Product)
            product.restock(quantity)
            return uow.commit(product)            # one atomic write, then COMMIT

(``retry_on_conflict`` gives a unit of work of its own to a caller that brought none.)

What it owns, in order:

1. **The connection**: one transaction on one connection of the event store
   (``shop.recorder``), from entering the block to the commit.
2. **The writer locks**, in one global order: an idempotency key's lock first (taken on
   entering, with the lookup of its record), then aggregates by lock key. A lock asked
   for later that sorts before one already held is only *tried*; if it is busy, the
   attempt ends (``LockOrder``) and the retry takes every lock the command needed, in
   order, at its first ``lock()``. Two commands therefore never wait for each other in
   a circle.
3. **The loads**: ``load()`` copies the aggregate from the process's cache and
   fast-forwards it with the events saved since (one query, on this transaction's
   connection), checks it is visible to the caller (else 404) and only then the
   caller's ``If-Match`` (412): a command about an aggregate the caller may not see
   reveals nothing.
4. **The commit**: the events of every aggregate, and the idempotency record, in one
   atomic write that ends with COMMIT (``PostgresTransaction.append_and_commit``).

Leaving the block without a commit rolls back; a refusal by a rule (an
``ApplicationError`` that is not transient) is recorded for the key first, in the same
transaction. A failed commit (another writer's version won) or a lost lock order ends
the attempt: ``retry_on_conflict`` runs the service again on a fresh transaction, which
takes the key's lock again and replays the record if a duplicate finished meanwhile. A
dead connection is given back to the pool (which drops it) and the command answers
503 at once: it is never retried on.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import tenacity
from django.conf import settings
from django.db import transaction
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from shop import idempotency
from shop.errors import ApplicationError, ConcurrentUpdate, NotFound, PreconditionFailed
from shop.eventstore import Saved, ShopApplication, events_saved, get_app
from shop.metadata import Context
from shop.personal_data import KeyRing, personal_data
from shop.recorder import lock_wait_ran_out

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


class LockWaitTimeout(ConcurrentUpdate):
    """Another writer held the aggregates for longer than the lock wait."""

    default_detail = "Another change to the same data took too long; try again."


class LockOrder(IntegrityError):
    """A lock asked for out of order was busy: the attempt lost, as to a version
    conflict, and the retry takes every lock in order."""


def lock_key(aggregate_id: UUID) -> int:
    """A writer lock's key: a signed 64-bit int from the id's first 8 bytes (a
    collision only makes two aggregates share a queue)."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


def lock_wait_seconds() -> float:
    return settings.COMMAND_LOCK_WAIT_SECONDS


class UnitOfWork:
    """One command's transaction (see the module). Reusable: each ``with`` block is
    one attempt, on a fresh transaction."""

    def __init__(self, *, context: Context | None = None,
                 claim: idempotency.Claim | None = None,
                 if_match: tuple[UUID, int] | None = None) -> None:
        self.context = context or Context()
        self.claim = claim
        self.if_match = if_match
        # Every lock an attempt asked for: a retry takes them all at its first lock().
        self._needed: set[int] = set()
        self._held: set[int] = set()
        self._transaction: Any = None
        self._app: ShopApplication | None = None

    # -- the transaction

    def __enter__(self) -> UnitOfWork:
        self._app = get_app()
        self._transaction = self._app.recorder.transaction(
            lock_wait_seconds(), self._app.snapshots.recorder if self._app.snapshots else None)
        self._held = set()
        # Aggregate id -> (the cached version, the events after it), read with a lock.
        self._prefetched: dict[UUID, tuple[int, list[Any]]] = {}
        # Each person's data key is read once per attempt (shop.personal_data). A
        # customer's own key seals their name in every event's metadata: it is read
        # with the attempt's first locks, in the same round trip.
        self.keys = KeyRing(self._transaction)
        actor = self.context.actor
        self._actor_key = ([actor.user_id] if actor.kind == "customer"
                           and actor.user_id is not None else [])
        if self.claim is not None:
            try:
                found, data_keys = self._transaction.claim(
                    lock_key(self.claim.record_id), self.claim.record_id,
                    self.claim.user_id, idempotency.TTL, idempotency.max_live_keys(),
                    self._actor_key)
                self._read_keys(data_keys)
                record = self.claim.check(found)
            except OperationalError as exc:
                self._end()
                if lock_wait_ran_out(exc):
                    raise idempotency.KeyInUse() from None
                raise
            except BaseException:
                self._end()
                raise
            if record is not None:  # a duplicate ran it while this one waited
                self._end()
                raise idempotency.Answered(record)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._transaction is None:  # committed
            return
        try:
            record = None
            if isinstance(exc, ApplicationError) and self.claim is not None:
                record = self.claim.refused(exc)
            if record is not None and self._transaction.usable:
                self._transaction.record_and_commit(record)
        finally:
            self._end()

    def _end(self) -> None:
        transaction_, self._transaction = self._transaction, None
        if transaction_ is not None:
            transaction_.close()

    # -- locks and loads

    def lock(self, *aggregate_ids: UUID) -> None:
        """Hold the writer locks of these aggregates until the commit (see the module
        for the order). On SQLite, which has one writer at a time, there is none."""
        asked = {lock_key(aggregate_id) for aggregate_id in aggregate_ids}
        first = not self._held
        self._needed |= asked
        wanted = (self._needed if first else asked) - self._held
        if not wanted:
            return
        highest = max(self._held, default=None)
        in_order = sorted(k for k in wanted if highest is None or k > highest)
        out_of_order = sorted(wanted.difference(in_order))
        try:
            if out_of_order and not self._transaction.try_lock(out_of_order):
                raise LockOrder()
            if in_order:
                versions = self._cached_versions(aggregate_ids)
                locked = self._transaction.lock(in_order, self._actor_key, versions)
                self._read_keys(locked.data_keys)
                for aggregate_id, events in (locked.events or {}).items():
                    self._prefetched[aggregate_id] = (versions[aggregate_id], events)
        except OperationalError as exc:
            if lock_wait_ran_out(exc):
                raise LockWaitTimeout() from None
            raise
        self._held |= wanted

    def _cached_versions(self, aggregate_ids: tuple[UUID, ...]) -> dict[UUID, int]:
        """The version in this process's cache of each aggregate about to be locked
        that has one: the lock's round trip reads the events saved since, which
        ``load`` then applies instead of asking again."""
        cache, versions = self._app.aggregate_cache, {}
        for aggregate_id in aggregate_ids:
            if aggregate_id in self._prefetched:
                continue
            try:
                versions[aggregate_id] = cache.get(aggregate_id).version
            except KeyError:
                continue
        return versions

    def _read_keys(self, found: dict[int, bytes] | None) -> None:
        """Keep the actor's key a round trip read (``None``: it was not read)."""
        if found is not None:
            self.keys.read(self._actor_key, found)
            self._actor_key = []

    def load(self, aggregate_id: UUID, cls: type[A], *, what: str | None = None,
             visible: Callable[[A], bool] | None = None) -> A:
        """The aggregate as last saved, or ``NotFound``; also ``NotFound`` when
        ``visible(aggregate)`` says the caller may not see it. Then the caller's
        If-Match: another version is ``PreconditionFailed``."""
        aggregate = self._fetch(aggregate_id)
        name = what or cls.__name__
        if not isinstance(aggregate, cls) or (visible is not None and not visible(aggregate)):
            raise NotFound(f"{name} {aggregate_id} was not found.")
        expected = self.if_match
        if expected is not None and expected[0] == aggregate_id \
                and expected[1] != aggregate.version:
            raise PreconditionFailed(
                f"{name} {aggregate_id} changed since you read it: it is at version "
                f"{aggregate.version}, not {expected[1]}. Nothing was saved; reload it and "
                "try again.")
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return self._fetch(aggregate_id) is not None

    def _fetch(self, aggregate_id: UUID) -> Aggregate | None:
        app, tx = self._app, self._transaction
        cache = app.aggregate_cache
        read = self._prefetched.pop(aggregate_id, None)
        try:
            aggregate = copy.deepcopy(cache.get(aggregate_id))
        except KeyError:
            aggregate = None
            snapshot = tx.select_snapshot(aggregate_id)
            if snapshot is not None:
                aggregate = app.mapper.to_domain_event(snapshot, self.keys).mutate(None)
        version = aggregate.version if aggregate else 0
        # The events the lock's round trip read after the cached version, if the cache
        # still holds that version (another thread of this process may have moved it).
        if read is not None and aggregate is not None and read[0] == version:
            events = read[1]
        else:
            events = tx.select_events(aggregate_id, version)
        for stored in events:
            aggregate = app.mapper.to_domain_event(stored, self.keys).mutate(aggregate)
        # Aggregates holding personal data are not kept: a forgotten customer's name
        # must not outlive their key in some process's memory.
        if events and aggregate is not None and personal_data(type(aggregate)) is None:
            cache.put(aggregate_id, copy.deepcopy(aggregate))
        return aggregate

    def forget(self, user_id: int) -> None:
        """Replace a person's data key with a tombstone at the commit: every value
        sealed with it is unreadable from then on, and no command makes them a new
        key (``shop.personal_data``)."""
        self._transaction.forget_data_key(user_id)
        self.keys.forget(user_id)

    # -- the commit

    def commit(self, *aggregates: Aggregate, primary: Aggregate | None = None,
               extra: dict[str, Any] | None = None) -> Saved:
        """Save every aggregate's new events (and the key's record) in one atomic
        write, and end the transaction. Returns the primary aggregate's (default: the
        first's) id and new version, and the notification ids appended. A command
        that changed nothing appends nothing and answers the position of the version
        it answers."""
        app, tx = self._app, self._transaction
        target = primary or aggregates[0]
        extra = extra or {}
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        if not events:
            position = tx.position_of(target.id, target.version) or 0
            saved = Saved(target.id, target.version, position, extra, (position,))
            if self.claim is not None:
                tx.record_and_commit(self.claim.ran(saved))
            self._end()
            return saved
        metadata = self.context.stamp(events, target.id)
        stored = [app.mapper.to_stored_event(event, meta, self.keys)
                  for event, meta in zip(events, metadata, strict=True)]
        record = None
        if self.claim is not None:
            record = self.claim.ran(Saved(target.id, target.version, 0, extra))
        try:
            ids = tx.append_and_commit(stored, record)
        finally:
            self._end()
        saved = Saved(target.id, target.version, ids[-1], extra, tuple(ids))
        app.snapshot_saved(list(aggregates),
                           [(e.originator_id, e.originator_version) for e in events])
        # robust: the events are durable by now; a failing receiver (broker down, a
        # projection error) is logged and must not turn an accepted command into a 500.
        position = ids[-1]
        # A function, not a partial: a robust on_commit logs the name of one that raises.
        transaction.on_commit(lambda: _announce(position), robust=True)
        return saved


def _announce(position: int) -> None:
    events_saved.send(sender=ShopApplication, position=position)


# Re-run a command whose attempt lost: another writer saved the same aggregate first,
# or a lock it needed was busy and out of order. Each attempt is a fresh transaction
# that reloads the aggregates, so the rules are checked again against the state that
# won. After 30 lost attempts the IntegrityError propagates: the API answers 409
# concurrent_update, the admin says so. Random waits growing to 20 ms spread out
# writers that collided.
_retrying = tenacity.retry(
    retry=tenacity.retry_if_exception_type(IntegrityError),
    stop=tenacity.stop_after_attempt(30),
    wait=tenacity.wait_random_exponential(multiplier=0.001, max=0.02),
    reraise=True,
)


def retry_on_conflict(service: Callable[..., T]) -> Callable[..., T]:
    """Run ``service`` again after a lost attempt (see above). A service that takes a
    ``uow`` gets one unit of work for all its attempts (a new one if its caller brought
    none), which remembers the locks an earlier attempt needed."""
    retried = _retrying(service)
    if "uow" not in inspect.signature(service).parameters:
        return retried

    @functools.wraps(service)
    def run(*args: Any, uow: UnitOfWork | None = None, **kwargs: Any) -> T:
        return retried(*args, uow=uow if uow is not None else UnitOfWork(), **kwargs)

    return run


def load(aggregate_id: UUID, cls: type[A]) -> A:
    """An aggregate as last saved, outside any command (a script, a test): read in a
    unit of work of its own that writes nothing. ``NotFound`` if there is none."""
    with UnitOfWork() as uow:
        return uow.load(aggregate_id, cls)
