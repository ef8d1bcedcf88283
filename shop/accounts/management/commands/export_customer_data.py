"""``manage.py export_customer_data USERNAME``: the right of access, as one JSON
document on standard output (shop.accounts.privacy)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from shop.accounts.management.commands._privacy import customer_named
from shop.accounts.privacy import customer_export


class Command(BaseCommand):
    help = "Print everything the shop holds about a customer, as one JSON document."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        document = customer_export(user=customer_named(username))
        self.stdout.write(json.dumps(document, indent=2, default=str, ensure_ascii=False))
