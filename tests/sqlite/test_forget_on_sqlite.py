"""Forgetting on the embedded default: the SQLite recorder leaves the same tombstone
(an empty data key) as PostgreSQL's, so a command racing the forget makes no new key
(``shop.personal_data``; the PostgreSQL twin is in tests/integration/test_personal_data.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.sqlite.test_embedded_default import embedded_env, run

FORGET = textwrap.dedent(
    """
    from django.contrib.auth.models import User

    from orders.domain import Order
    from orders.services import order_place
    from shop.accounts.privacy import customer_forget
    from shop.eventstore import get_app
    from shop.metadata import Actor, Context
    from shop.unit_of_work import UnitOfWork, load
    from tests.givens import register
    from tests.support.readside import notifications

    assert get_app().env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite"
    mug = register("MUG-9", stock=10)


    def place_as(user, address):
        saved, _total = order_place(
            uow=UnitOfWork(context=Context(Actor.of(user), "api")), customer_id=user.pk,
            customer=user.get_username(), lines=[(mug, 1)], shipping_address=address)
        return saved.aggregate_id


    def keys(user_id):
        with get_app().recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT key FROM shop_data_keys WHERE user_id = ?", (user_id,))
            return [bytes(row[0]) for row in cursor.fetchall()]


    # A customer with a key; an order of theirs, authenticated before the forget
    # committed (``racing``: the user as its request saw them), runs after it.
    zelda = User.objects.create_user("zelda-quux", password="pass-word-123")
    first = place_as(zelda, "42 Wallaby Way")
    [old] = keys(zelda.pk)
    assert len(old) == 32
    racing = User.objects.get(pk=zelda.pk)
    assert customer_forget(user=zelda) is True
    assert keys(zelda.pk) == [b""], keys(zelda.pk)  # a tombstone
    get_app().forget_cached_aggregates()
    second = place_as(racing, "7 Racing Rd")
    assert keys(zelda.pk) == [b""], keys(zelda.pk)  # no new key
    for order_id in (first, second):
        order = load(order_id, Order)
        assert (order.customer, order.shipping_address) == (None, None), order_id
    decoded = get_app().mapper.decode_many(notifications())
    placed = [event for event, _meta in decoded if isinstance(event, Order.Placed)]
    assert [(p.customer, p.shipping_address) for p in placed] == [(None, None)] * 2
    assert {meta.actor.username for _event, meta in decoded
            if meta.actor.user_id == zelda.pk} == {None}

    # A customer forgotten before they had a key gets a tombstone all the same.
    yann = User.objects.create_user("yann-quux", password="pass-word-123")
    racing = User.objects.get(pk=yann.pk)
    assert customer_forget(user=yann) is True
    assert keys(yann.pk) == [b""], keys(yann.pk)
    assert load(place_as(racing, "9 Late Ln"), Order).shipping_address is None
    assert keys(yann.pk) == [b""], keys(yann.pk)
    print("forget ok")
    """
)


def test_a_command_racing_the_forget_makes_no_new_key_on_sqlite(tmp_path: Path):
    env = embedded_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    run(["manage.py", "migrate", "--no-input"], env)
    assert "forget ok" in run(["manage.py", "shell", "-c", FORGET], env)
    # The projections, run in-process at each commit, decoded every event and did not
    # stop (projection_status exits 1 when one has failed).
    status = run(["manage.py", "projection_status", "--json"], env)
    assert '"status": "ok"' in status, status
