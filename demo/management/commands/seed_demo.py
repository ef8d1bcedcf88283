"""A believable demo shop, written through the command services only.

Staff user ``admin``, customers ``john``, ``jane`` and ``priya``, ten products, and
orders over the last three months: John's five (as in the seed article), shipments in
every state, one cancelled order, a rename and a reprice. Read models are never written
here; the projections are caught up at the end so the demo is visible at once.

The write side stamps events with the current time. To spread the history over three
months, the library's event clock (``create_timestamp``) is set back while each
command runs; the log order is still the order the commands ran in, oldest first.
Idempotent: when the first demo SKU is already in the catalog, nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from eventsourcing.domain import CanCreateTimestamp

from catalog.domain import Product, product_id_for_sku
from catalog.services import product_register, product_rename, product_reprice, product_restock
from orders.services import order_cancel, order_place
from projections.management.commands._common import projectors_named
from projections.models import Checkpoint
from projections.runner import catch_up
from shipping.services import shipment_change_status, shipment_create
from shop.errors import NotFound
from shop.eventstore import get_app
from shop.metadata import Actor, Context
from shop.unit_of_work import UnitOfWork, load

STAFF = ("admin", "admin-demo-pass")
CUSTOMER_PASSWORD = "demo-pass-123"
CUSTOMERS = {
    "john": ("John", "Smith", "12 Harbour Road, Bristol BS1 4AB, UK"),
    "jane": ("Jane", "Doe", "4 Rue des Lilas, 75011 Paris, France"),
    "priya": ("Priya", "Natarajan", "221 MG Road, Bengaluru 560001, India"),
}

# sku, name, price, stock, category
PRODUCTS = [
    ("MUG-1", "Blue mug", "12.50", 120, "kitchen"),
    ("MUG-2", "Red mug", "12.50", 80, "kitchen"),
    ("TEE-S", "Logo T-shirt, small", "19.99", 50, "clothing"),
    ("TEE-M", "Logo T-shirt, medium", "19.99", 60, "clothing"),
    ("HOOD-M", "Zip hoodie, medium", "49.00", 25, "clothing"),
    ("CAP-1", "Baseball cap", "15.00", 40, "clothing"),
    ("BAG-1", "Canvas tote bag", "9.90", 200, "bags"),
    ("BOTTLE-1", "Steel water bottle", "24.00", 70, "kitchen"),
    ("NOTE-A5", "A5 dotted notebook", "6.50", 300, "stationery"),
    ("PEN-3", "Gel pens, pack of 3", "4.20", 500, "stationery"),
]

# days ago, customer, [(sku, quantity)], what happens next: [(days ago, action)]
# An action is "cancel" or a shipment status ("created" makes the shipment).
ORDERS = [
    (88, "john", [("MUG-1", 2), ("NOTE-A5", 3)],
     [(87, "created"), (86, "dispatched"), (85, "in_transit"), (83, "delivered")]),
    (71, "jane", [("HOOD-M", 1)],
     [(70, "created"), (69, "dispatched"), (68, "in_transit"), (66, "delivered")]),
    (64, "john", [("TEE-M", 1), ("CAP-1", 1)],
     [(63, "created"), (62, "dispatched"), (61, "in_transit"), (59, "delivered")]),
    (41, "john", [("BOTTLE-1", 1)], [(40, "cancel")]),
    (33, "priya", [("BAG-1", 2), ("PEN-3", 4)],
     [(32, "created"), (31, "dispatched"), (30, "in_transit"), (29, "delivered")]),
    (16, "john", [("MUG-2", 1), ("PEN-3", 2)],
     [(15, "created"), (14, "dispatched"), (13, "in_transit")]),
    (6, "jane", [("TEE-S", 2)], [(5, "created"), (4, "dispatched")]),
    (2, "priya", [("NOTE-A5", 1), ("MUG-1", 1)], [(1, "created")]),
    (1, "john", [("HOOD-M", 1), ("BAG-1", 1)], []),
]

# days ago, sku, change: a rename shows in past orders, a reprice only in new ones.
CATALOG_CHANGES = [
    (50, "BOTTLE-1", "reprice", Decimal("22.00")),
    (20, "MUG-1", "rename", "Blue ceramic mug"),
    (10, "HOOD-M", "restock", 15),
]


CATALOG_COMMANDS: dict[str, Callable[..., object]] = {
    "rename": lambda uow, product_id, name: product_rename(uow=uow, product_id=product_id,
                                                           name=name),
    "reprice": lambda uow, product_id, price: product_reprice(uow=uow, product_id=product_id,
                                                              price=price),
    "restock": lambda uow, product_id, n: product_restock(uow=uow, product_id=product_id,
                                                          quantity=n),
}


def by(user: User) -> UnitOfWork:
    """A unit of work for a command this management command runs on ``user``'s behalf
    (the events' metadata: that user, via a command)."""
    return UnitOfWork(context=Context(Actor.of(user), "command"))


@contextmanager
def event_clock(moment: datetime) -> Iterator[None]:
    """Stamp events created inside the block with ``moment`` instead of now."""
    original = CanCreateTimestamp.__dict__["create_timestamp"]
    CanCreateTimestamp.create_timestamp = staticmethod(lambda: moment)  # type: ignore[method-assign]
    try:
        yield
    finally:
        CanCreateTimestamp.create_timestamp = original  # type: ignore[method-assign]


def positions(projectors) -> dict[str, int]:
    """Each projection's checkpoint: the log position it has applied up to."""
    saved = dict(Checkpoint.objects.filter(projection__in=[p.name for p in projectors])
                 .values_list("projection", "position"))
    return {projector.name: saved.get(projector.name, 0) for projector in projectors}


def events_between(start: int, end: int) -> int:
    """How many events the log holds after position ``start``, up to ``end``."""
    if end <= start:
        return 0
    return len(get_app().recorder.select_notifications(start + 1, limit=end - start, stop=end))


def already_seeded() -> bool:
    try:
        load(product_id_for_sku(PRODUCTS[0][0]), Product)
    except NotFound:
        return False
    return True


class Command(BaseCommand):
    help = "Create a demo catalog, customers, orders and shipments (skipped if present)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true",
            help="Seed even with DEBUG off (the demo users' passwords are published).",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: this looks like production, and seed_demo creates a "
                "superuser whose password is published. Use --force if you mean it."
            )
        projectors = projectors_named([])
        before = positions(projectors)
        users = self._users()
        if already_seeded():
            self.stdout.write("Demo data already present (MUG-1 exists); nothing written.")
        else:
            self._seed(users)
        # Embedded, the projections ran in-process after each command: count what they
        # applied since the start, not only this last catch-up (issue 24: "0 applied").
        for projector in projectors:
            catch_up(projector)
        for projector in projectors:
            start, end = before[projector.name], positions([projector])[projector.name]
            self.stdout.write(f"Projection {projector.name}: {events_between(start, end)} "
                              f"events applied (up to position {end}).")
        self.stdout.write("")
        self.stdout.write(f"Staff:     {STAFF[0]} / {STAFF[1]}   (admin at /admin/)")
        self.stdout.write(
            f"Customers: {', '.join(CUSTOMERS)} / {CUSTOMER_PASSWORD}   "
            "(POST /api/auth/token/ for a token)"
        )

    def _users(self) -> dict[str, User]:
        users = {}
        username, password = STAFF
        admin = User.objects.filter(username=username).first()
        if admin is None:
            admin = User.objects.create_superuser(username, "admin@shop.example", password)
            self.stdout.write(f"Created staff user {username}.")
        users[username] = admin
        for username, (first, last, _address) in CUSTOMERS.items():
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(
                    username,
                    f"{username}@example.com",
                    CUSTOMER_PASSWORD,
                    first_name=first,
                    last_name=last,
                )
                self.stdout.write(f"Created customer {username}.")
            users[username] = user
        return users

    def _seed(self, users: dict[str, User]) -> None:
        now = timezone.now().replace(microsecond=0)

        def at(days_ago: int, hour: int = 10) -> datetime:
            return (now - timedelta(days=days_ago)).replace(hour=hour, minute=0, second=0)

        ids: dict[str, UUID] = {}
        with event_clock(at(95, 9)):
            for sku, name, price, stock, category in PRODUCTS:
                ids[sku] = product_register(
                    uow=by(users[STAFF[0]]), sku=sku, name=name, price=Decimal(price),
                    stock=stock, category=category,
                ).aggregate_id
        self.stdout.write(f"Registered {len(PRODUCTS)} products.")

        # Everything after the catalog exists, run in time order (the sort is stable).
        steps: list[tuple[datetime, Callable[[], None]]] = []
        orders: dict[int, UUID] = {}
        shipments: dict[int, UUID] = {}
        admin = users[STAFF[0]]

        def place(index: int, customer: str, lines: list[tuple[str, int]]) -> None:
            saved, _total = order_place(
                uow=by(users[customer]),
                customer_id=users[customer].id,
                customer=customer,
                lines=[(ids[sku], quantity) for sku, quantity in lines],
                shipping_address=CUSTOMERS[customer][2],
            )
            orders[index] = saved.aggregate_id

        def follow(index: int, action: str) -> None:
            if action == "cancel":
                order_cancel(uow=by(admin), order_id=orders[index], user_id=admin.id,
                             is_staff=True, reason="Customer changed their mind.")
            elif action == "created":
                shipments[index] = shipment_create(
                    uow=by(admin), order_id=orders[index], carrier="DHL" if index % 2 else "UPS"
                ).aggregate_id
            else:
                shipment_change_status(uow=by(admin), shipment_id=shipments[index],
                                       status=action)

        for days, sku, change, value in CATALOG_CHANGES:
            steps.append((at(days, 9), partial(CATALOG_COMMANDS[change], by(admin), ids[sku],
                                               value)))
        for index, (days, customer, lines, next_steps) in enumerate(ORDERS):
            steps.append((at(days, 11), partial(place, index, customer, lines)))
            for offset, (later, action) in enumerate(next_steps):
                steps.append((at(later, 14 + offset), partial(follow, index, action)))
        steps.sort(key=lambda step: step[0])
        for moment, step in steps:
            with event_clock(moment):
                step()
        self.stdout.write(
            f"Placed {len(ORDERS)} orders, created {len(shipments)} shipments, "
            f"made {len(CATALOG_CHANGES)} catalog changes."
        )
