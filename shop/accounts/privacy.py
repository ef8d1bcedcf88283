"""A customer's rights over their personal data: to see it all (export) and to be
forgotten (crypto-shredding, ``shop.personal_data``).

Forgetting a customer, in order:

1. in the event store, one transaction: destroy their data key (a tombstone takes its place, so a
   command racing the forget makes no new one), and append
   ``Customer.Forgotten`` (the read models learn of it through the log: "forgotten
   customer", no address). From then on every value sealed with that key reads as
   None: the log keeps the events, and totals, lines and sales are unchanged;
2. the account, in the same Django transaction as step 1 ran inside: the username
   becomes ``forgotten-<id>``, no name or email, an unusable password, every token
   ended, and the login attempts recorded under the old name deleted.

Step 2 commits only if step 1 did; if step 2 fails after step 1 committed, running it
again completes it. A customer forgotten already is a no-op that says so. Staff
accounts are refused.

The export gathers the account here and the other sections from the modules that hold
them (``contribute_export``, called from their ``AppConfig.ready()``: the kernel does
not know the read models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from shop.accounts.domain import Customer, customer_id_for
from shop.accounts.services import user_tokens_revoke
from shop.errors import InvalidState
from shop.unit_of_work import UnitOfWork, retry_on_conflict

FORGOTTEN_PREFIX = "forgotten-"

#: Section name -> function(user) -> the section's JSON value (see the module).
EXPORT_SECTIONS: dict[str, Callable[[User], Any]] = {}


class StaffCannotBeForgotten(InvalidState):
    default_detail = (
        "Staff accounts cannot be forgotten: remove the staff status first, so that the "
        "shop's own actions stay attributable."
    )


def is_forgotten(user: User) -> bool:
    return user.get_username() == f"{FORGOTTEN_PREFIX}{user.pk}"


def customer_forget(*, uow: UnitOfWork | None = None, user: User) -> bool:
    """Forget ``user`` (see the module). Returns False if they were forgotten already."""
    if user.is_staff:
        raise StaffCannotBeForgotten()
    with transaction.atomic():
        forgotten_now = _forget_in_the_log(uow=uow, user_id=user.pk)
        if not forgotten_now and is_forgotten(user):
            return False
        _anonymise(user)
    return True


@retry_on_conflict
def _forget_in_the_log(*, uow: UnitOfWork, user_id: int) -> bool:
    customer_id = customer_id_for(user_id)
    with uow:
        uow.lock(customer_id)
        if uow.exists(customer_id):
            return False  # forgotten before; the block ends without a commit
        uow.forget(user_id)
        uow.commit(Customer.forget(user_id))
        return True


def _anonymise(user: User) -> None:
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    old_name = user.get_username()
    user.username = f"{FORGOTTEN_PREFIX}{user.pk}"
    user.first_name = user.last_name = user.email = ""
    user.set_unusable_password()
    user.save()
    user_tokens_revoke(user=user)
    for model in (AccessAttempt, AccessLog, AccessFailureLog):
        model.objects.filter(username=old_name).delete()


def contribute_export(name: str, section: Callable[[User], Any]) -> None:
    EXPORT_SECTIONS[name] = section


def customer_export(*, user: User) -> dict[str, Any]:
    """Everything the shop holds about ``user``, as one JSON document."""
    account = {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": user.date_joined.isoformat(),
        "last_login": user.last_login.isoformat() if user.last_login else None,
        "is_active": user.is_active,
        "forgotten": is_forgotten(user),
    }
    return {"account": account,
            **{name: section(user) for name, section in EXPORT_SECTIONS.items()}}
