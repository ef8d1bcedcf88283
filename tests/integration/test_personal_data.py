"""Personal data in the log is sealed with its person's own key, and forgetting the
person replaces the key with a tombstone (crypto-shredding, ``shop.personal_data``): on
the event store, the commands and the account."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from knox.models import AuthToken

from orders.domain import Order
from shop.accounts.domain import Customer, customer_id_for
from shop.accounts.privacy import StaffCannotBeForgotten, customer_forget
from shop.accounts.services import token_issue
from shop.eventstore import get_app
from shop.metadata import Actor, Context
from shop.personal_data import seal, unseal
from shop.recorder import PostgresTransaction
from shop.unit_of_work import UnitOfWork, load
from tests.givens import project, register
from tests.support.readside import notifications

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_projection_trigger")]

NAME = "zelda-quux"
ADDRESS = "42 Wallaby Way, Sydney"


@pytest.fixture
def zelda(make_user):
    return make_user(NAME)


def place_as(user, address: str = ADDRESS):
    from orders.services import order_place

    saved, _total = order_place(
        uow=UnitOfWork(context=Context(Actor.of(user), "api")),
        customer_id=user.pk, customer=user.get_username(),
        lines=[(register(f"SKU-{user.pk}-{len(notifications())}"), 2)],
        shipping_address=address)
    return saved.aggregate_id


def stored_bytes() -> bytes:
    """Every event's and snapshot's stored state, as one blob to search."""
    with get_app().recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT state FROM shop_events UNION ALL SELECT state FROM shop_snapshots")
        return b"".join(bytes(row["state"] if isinstance(row, dict) else row[0])
                        for row in cursor.fetchall())


def test_the_log_holds_the_name_and_address_sealed_and_commands_see_them_plain(
    event_store, zelda
):
    order_id = place_as(zelda)
    blob = stored_bytes()
    assert NAME.encode() not in blob and ADDRESS.encode() not in blob
    order = load(order_id, Order)
    assert (order.customer, order.shipping_address) == (NAME, ADDRESS)
    placed, meta = get_app().mapper.decode(notifications()[-2])
    assert (placed.customer, meta.actor.username) == (NAME, NAME)


def test_a_unit_of_work_reads_a_persons_key_once(event_store, zelda, monkeypatch):
    place_as(zelda)  # zelda has a key now
    reads = []
    original, original_lock = PostgresTransaction.data_keys, PostgresTransaction.lock
    monkeypatch.setattr(PostgresTransaction, "data_keys",
                        lambda self, ids: reads.append(("alone", ids)) or original(self, ids))

    def lock(self, keys, data_keys_of=(), events_after=None):
        locked = original_lock(self, keys, data_keys_of, events_after)
        if data_keys_of:
            reads.append(("with the locks", list(data_keys_of)))
            assert locked.data_keys == {zelda.pk: original(self, [zelda.pk])[zelda.pk]}
        return locked

    monkeypatch.setattr(PostgresTransaction, "lock", lock)
    place_as(zelda)  # the Placed event, and the actor of each of its two events
    # Read once, in the round trip of the command's first locks (its product's).
    assert reads == [("with the locks", [zelda.pk])]


def test_forgetting_makes_the_personal_fields_unreadable_and_nothing_else(event_store, zelda):
    order_id = place_as(zelda)
    token_issue(user=zelda)
    before = load(order_id, Order)

    assert customer_forget(user=zelda) is True

    order = load(order_id, Order)
    assert (order.customer, order.shipping_address) == (None, None)
    assert (order.lines, order.total, order.status) == (before.lines, before.total,
                                                        before.status)
    placed, meta = get_app().mapper.decode(notifications()[-3])
    assert (placed.customer, placed.shipping_address, meta.actor.username) == (None,) * 3
    assert meta.actor.user_id == zelda.pk  # who it was stays, as a number
    forgotten = load(customer_id_for(zelda.pk), Customer)
    assert forgotten.user_id == zelda.pk
    zelda.refresh_from_db()
    assert zelda.get_username() == f"forgotten-{zelda.pk}"
    assert (zelda.email, zelda.has_usable_password()) == ("", False)
    assert not AuthToken.objects.filter(user=zelda).exists()
    # Even the metadata of the Forgotten event was sealed with a key thrown away.
    assert NAME.encode() not in stored_bytes()


def test_forgetting_twice_is_a_no_op_that_says_so(event_store, zelda, capsys):
    place_as(zelda)
    call_command("forget_customer", NAME)
    assert "Forgotten" in capsys.readouterr().out
    head = len(notifications())
    call_command("forget_customer", f"forgotten-{zelda.pk}")
    assert "forgotten already" in capsys.readouterr().out
    assert len(notifications()) == head
    assert customer_forget(user=User.objects.get(pk=zelda.pk)) is False


def test_staff_and_unknown_users_are_refused(event_store, staff):
    with pytest.raises(StaffCannotBeForgotten):
        customer_forget(user=staff)
    with pytest.raises(CommandError, match="Staff accounts"):
        call_command("forget_customer", "staff")
    with pytest.raises(CommandError, match="No user is named 'nobody'"):
        call_command("forget_customer", "nobody")
    assert notifications() == []


def test_a_snapshot_of_an_order_is_sealed_too(event_store, zelda):
    order_id = place_as(zelda)
    get_app().take_snapshot(order_id)
    assert NAME.encode() not in stored_bytes()
    get_app().forget_cached_aggregates()
    assert load(order_id, Order).shipping_address == ADDRESS  # from the snapshot
    customer_forget(user=zelda)
    get_app().forget_cached_aggregates()
    assert load(order_id, Order).shipping_address is None


def test_a_sealed_value_opens_only_with_its_key_and_subject():
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM.generate_key(bit_length=256)
    sealed = seal(ADDRESS, key, 7)
    assert unseal(sealed, key, 7) == ADDRESS
    assert unseal(sealed, None, 7) is None  # the key is gone: forgotten, not an error
    assert unseal("plain, stored before sealing", None, 7) == "plain, stored before sealing"
    with pytest.raises(InvalidTag):
        unseal(sealed, key, 8)  # another person's data cannot pass for this one's


def data_key_rows(user_id: int) -> list[bytes]:
    """The ``shop_data_keys`` rows of a person, as their keys."""
    with get_app().recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT key FROM shop_data_keys WHERE user_id = %s", [user_id])
        return [bytes(row["key"]) for row in cursor.fetchall()]


def test_a_command_racing_the_forget_makes_no_new_key(event_store, zelda):
    """An order authenticated before the forget committed (``racing``: the user as its
    request saw them) runs after it: it finds the forgotten person's tombstone, not
    "no key yet", so it makes no new key. Its own values are sealed with a key thrown
    away, and the values sealed with the old key read as None (never ``InvalidTag``,
    which a new key would raise on them)."""
    first = place_as(zelda)
    [old_key] = data_key_rows(zelda.pk)
    assert len(old_key) == 32
    racing = User.objects.get(pk=zelda.pk)

    assert customer_forget(user=zelda) is True
    assert data_key_rows(zelda.pk) == [b""]  # a tombstone: forgotten, not "no key yet"

    get_app().forget_cached_aggregates()
    second = place_as(racing, "7 Racing Rd")

    assert data_key_rows(zelda.pk) == [b""]  # still forgotten: no new key
    for order_id in (first, second):
        order = load(order_id, Order)
        assert (order.customer, order.shipping_address) == (None, None)
    decoded = get_app().mapper.decode_many(notifications())
    placed = [event for event, _meta in decoded if isinstance(event, Order.Placed)]
    assert [(p.customer, p.shipping_address) for p in placed] == [(None, None)] * 2
    assert {meta.actor.username for _event, meta in decoded
            if meta.actor.user_id == zelda.pk} == {None}
    assert b"7 Racing Rd" not in stored_bytes()
    project()  # the projections decode them too, and do not stop


def test_forgetting_a_person_who_never_had_a_key_leaves_a_tombstone(event_store, zelda):
    """A customer forgotten before any personal data of theirs was written: the
    tombstone is written all the same, and a later command makes no key."""
    racing = User.objects.get(pk=zelda.pk)
    assert data_key_rows(zelda.pk) == []
    assert customer_forget(user=zelda) is True
    assert data_key_rows(zelda.pk) == [b""]
    order_id = place_as(racing)
    assert data_key_rows(zelda.pk) == [b""]
    assert load(order_id, Order).shipping_address is None
