"""``manage.py forget_customer USERNAME``: the right to erasure (shop.accounts.privacy)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from shop.accounts.management.commands._privacy import customer_named
from shop.accounts.privacy import StaffCannotBeForgotten, customer_forget
from shop.metadata import Actor, Context
from shop.unit_of_work import UnitOfWork


class Command(BaseCommand):
    help = (
        "Forget a customer: destroy their data key (their name and addresses in the log "
        "become unreadable), record it in the log, and anonymise the account."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        user = customer_named(username)
        try:
            forgotten = customer_forget(
                uow=UnitOfWork(context=Context(Actor(), "command")), user=user)
        except StaffCannotBeForgotten as exc:
            raise CommandError(exc.detail) from None
        if not forgotten:
            self.stdout.write(f"{user.get_username()} was forgotten already; nothing to do.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Forgotten: the account is now {user.get_username()}; its personal data in "
            "the log can no longer be read."))
