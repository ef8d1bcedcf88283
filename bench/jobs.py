"""Django-side jobs of the benchmark, each run as its own process by ``bench/run.py``.

    python bench/jobs.py seed                  users, tokens, products, order histories
    python bench/jobs.py generate --events N   append about N events (no HTTP, no trigger)
    python bench/jobs.py catch-up              time one worker catching up a backlog
    python bench/jobs.py decode                time reading + decoding the whole log
    python bench/jobs.py rebuild               time `rebuild_projections`, report peak RSS
    python bench/jobs.py verify                time `verify_projections` (the drift check)
    python bench/jobs.py sync                  catch every projection up to the head
    python bench/jobs.py catalog --products N  grow the catalog read model to N products

Each job prints one JSON object on its last stdout line. The environment (DATABASE_URL,
DJANGO_SETTINGS_MODULE=bench.settings, ...) is set by ``run.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import secrets
import sys
import time
from decimal import Decimal
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from eventsourcing.application import AggregateNotFoundError  # noqa: E402

from bench.baseline.models import BenchCustomerOrder, BenchRow  # noqa: E402
from bench.search_catalog import CATEGORIES, COLORS, MATERIALS, NOUNS  # noqa: E402
from catalog.domain import Product, product_id_for_sku  # noqa: E402
from orders.domain import Order  # noqa: E402
from projections.registry import PROJECTORS, get_projector  # noqa: E402
from projections.runner import catch_up, projection_position  # noqa: E402
from shipping.domain import Shipment  # noqa: E402
from shop.accounts.services import token_issue  # noqa: E402
from shop.eventstore import get_app, head_position  # noqa: E402

HUGE_STOCK = 1_000_000_000
EVENTS_PER_SAVE = 1000


def peak_rss_mb() -> float:
    """Peak RSS of this process or of any child it waited for (``--jobs`` replays in
    child processes), whichever is larger."""
    return max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


# --- seeding ---------------------------------------------------------------------


def user_with_token(username: str, *, staff: bool = False) -> tuple[User, str]:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": staff})
    if created:  # a password nobody knows: a token needs an account that can log in
        user.set_password(secrets.token_urlsafe(16))
        user.save(update_fields=["password"])
    return user, token_issue(user=user).token


def register_products(prefix: str, count: int) -> list[Product]:
    """Products with (practically) unlimited stock, registered in one save if new."""
    app = get_app()
    products, new = [], []
    for i in range(count):
        sku = f"{prefix}-{i:04d}"
        try:
            products.append(app.repository.get(product_id_for_sku(sku)))
        except AggregateNotFoundError:
            product = Product.register(
                sku=sku,
                name=f"Bench product {prefix} {i}",
                price=Decimal(random.randint(100, 9999)) / 100,
                stock=HUGE_STOCK,
            )
            products.append(product)
            new.append(product)
    if new:
        app.save(*new)
    return products


def place(user_id: int, username: str, products: list[Product], n_lines: int,
          rng: random.Random) -> tuple[Order, list[Product]]:
    """An order of ``n_lines`` distinct products, their stock reserved (not saved)."""
    chosen = rng.sample(products, n_lines)
    quantities = [rng.randint(1, 5) for _ in chosen]
    order = Order.place(
        customer_id=user_id,
        customer=username,
        lines=[
            {"product_id": p.id, "sku": p.sku, "quantity": q, "unit_price": p.price}
            for p, q in zip(chosen, quantities, strict=True)
        ],
        shipping_address=f"{rng.randint(1, 999)} Bench Street, Testville",
    )
    for p, q in zip(chosen, quantities, strict=True):
        p.reserve(order.id, q)
    return order, chosen


def job_seed(args: argparse.Namespace) -> dict:
    """Users with tokens, the bench products, the order histories, the baseline rows."""
    rng = random.Random(1)
    app = get_app()
    products = register_products("BENCH", args.products)
    staff, staff_token = user_with_token("bench-staff", staff=True)
    histories = {}
    for n in args.histories:
        user, token = user_with_token(f"bench-history-{n}")
        if not BenchCustomerOrder.objects.filter(customer_id=user.id).exists():
            for i in range(n):
                order, reserved = place(user.id, user.username, products, 3, rng)
                touched = [order]
                if i % 2 == 0:  # half the orders have a shipment to look up
                    shipment = Shipment(order_id=order.id, carrier="DHL")
                    order.ship(shipment.id)
                    shipment.advance("dispatched")
                    touched.append(shipment)
                app.save(*touched, *reserved)
                BenchCustomerOrder.objects.create(customer_id=user.id, order_id=order.id)
        histories[str(n)] = token
    customers = [user_with_token(f"bench-customer-{i}")[1] for i in range(args.customers)]
    if not BenchRow.objects.exists():
        BenchRow.objects.bulk_create(BenchRow(name=f"row {i}", value=i) for i in range(5))
    sync = sync_all()
    return {
        "products": [str(p.id) for p in products],
        "staff_token": staff_token,
        "history_tokens": histories,
        "customer_tokens": customers,
        "head": head_position(),
        "sync": sync,
    }


# --- generating a log ------------------------------------------------------------


def job_generate(args: argparse.Namespace) -> dict:
    """Append about ``--events`` events: orders placed (2 lines, stock reserved), half
    shipped and dispatched, a quarter delivered, a tenth cancelled (stock released).

    Many aggregates go into each ``Application.save`` (about 1,000 events), straight
    through the event store, without HTTP and without triggering the projections.
    """
    rng = random.Random(args.seed)
    app = get_app()
    products = register_products("GEN", 200)
    customers = [(1_000_000 + i, f"gen-customer-{i}") for i in range(1000)]
    start_head = head_position()
    started = time.perf_counter()
    appended = 0
    while appended < args.events:
        pending: list = []
        touched: dict[UUID, Product] = {}
        count = 0
        while count < min(EVENTS_PER_SAVE, args.events - appended):
            customer_id, username = rng.choice(customers)
            order, chosen = place(customer_id, username, products, 2, rng)
            for product in chosen:
                touched[product.id] = product
            count += 3
            pending.append(order)
            r = rng.random()
            if r < 0.5:
                shipment = Shipment(order_id=order.id, carrier=rng.choice(["DHL", "UPS"]))
                order.ship(shipment.id)
                shipment.advance("dispatched")
                count += 3
                if r < 0.25:
                    shipment.advance("delivered")
                    order.deliver()
                    count += 2
                pending.append(shipment)
            elif r < 0.6:
                order.cancel("changed my mind")
                for line in order.lines:
                    touched[line["product_id"]].release(order.id, line["quantity"])
                count += 3
        app.save(*pending, *touched.values())
        appended += count
    seconds = time.perf_counter() - started
    head = head_position()
    return {
        "events": head - start_head,
        "seconds": seconds,
        "events_per_s": (head - start_head) / seconds,
        "head": head,
    }


# --- projections ------------------------------------------------------------------


def decode_range(projector, start: int, stop: int, batch: int) -> tuple[int, float]:
    """Read and decode the projector's notifications in (start, stop], as the runner
    does (``decode_many`` per batch: each person's key read once for the batch),
    without applying them. Returns (count, seconds)."""
    app = get_app()
    topics = projector.topics()
    started = time.perf_counter()
    position, count = start, 0
    while position < stop:
        notifications = app.recorder.select_notifications(
            start=position, stop=stop, limit=batch, topics=topics, inclusive_of_start=False
        )
        app.mapper.decode_many(notifications)
        count += len(notifications)
        if len(notifications) < batch:
            break
        position = notifications[-1].id
    return count, time.perf_counter() - started


def job_catch_up(args: argparse.Namespace) -> dict:
    """One worker (this process) catches ``--projection`` up from its checkpoint to the
    head. Baseline first: reading and decoding the same notifications, no applying."""
    batch = settings.PROJECTION_BATCH_SIZE
    projector = get_projector(args.projection)
    start, head = projection_position(args.projection), head_position()
    decoded, decode_s = decode_range(projector, start, head, batch)
    started = time.perf_counter()
    applied = catch_up(projector)
    apply_s = time.perf_counter() - started
    return {
        "projection": args.projection,
        "backlog_log_events": head - start,
        "applied": applied,
        "apply_seconds": apply_s,
        "applied_per_s": applied / apply_s if apply_s else 0.0,
        "log_events_per_s": (head - start) / apply_s if apply_s else 0.0,
        "decoded": decoded,
        "decode_seconds": decode_s,
        "decoded_per_s": decoded / decode_s if decode_s else 0.0,
        "position": projection_position(args.projection),
        "head": head_position(),
    }


def job_decode(args: argparse.Namespace) -> dict:
    """Read and decode the whole log once per projection, as a rebuild reads it."""
    batch = settings.PROJECTION_BATCH_SIZE
    head = head_position()
    total_s, per = 0.0, {}
    for name in sorted(PROJECTORS):
        count, seconds = decode_range(get_projector(name), 0, head, batch)
        per[name] = {"decoded": count, "seconds": seconds}
        total_s += seconds
    return {"head": head, "seconds": total_s, "log_events_per_s": head / total_s,
            "projections": per}


def run_projection_command(command: str, *, jobs: int = 1,
                           tolerate: tuple[type[Exception], ...] = (),
                           **figures) -> tuple[dict, bool]:
    """Run the real projection ``command`` (all projections, ``--jobs``) in this process,
    timing it. Returns its figures (``figures`` among them, before the peak RSS) and
    whether it raised one of ``tolerate``."""
    head = head_position()
    out = io.StringIO()
    started = time.perf_counter()
    raised = False
    try:
        # The replay's own speed, as in a quiet hour: no pauses between batches.
        call_command(command, interval=3600, jobs=jobs, duty_cycle=1.0, stdout=out)
    except tolerate:
        raised = True
    seconds = time.perf_counter() - started
    return {
        "head": head,
        "seconds": seconds,
        "log_events_per_s": head / seconds,
        "jobs": jobs,
        **figures,
        "peak_rss_mb": peak_rss_mb(),
        "output": out.getvalue().strip().splitlines()[-len(PROJECTORS):],
    }, raised


def job_rebuild(args: argparse.Namespace) -> dict:
    """Run the real ``rebuild_projections`` command (all projections) in this process,
    timing it and reporting the process's peak RSS."""
    result, _ = run_projection_command("rebuild_projections", jobs=args.jobs,
                                       rss_before_mb=current_rss_mb())
    return result


def job_verify(args: argparse.Namespace) -> dict:
    """Run the real ``verify_projections`` command (all projections) in this process."""
    result, drifted = run_projection_command("verify_projections", jobs=args.jobs,
                                             tolerate=(CommandError,))
    return {**result, "drifted": drifted}


def sync_all() -> dict:
    return {name: catch_up(get_projector(name)) for name in sorted(PROJECTORS)}


def job_sync(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    applied = sync_all()
    return {"applied": applied, "seconds": time.perf_counter() - started,
            "head": head_position()}


def job_catalog(args: argparse.Namespace) -> dict:
    """Grow the catalog read model to ``--products`` rows with one INSERT (products
    i = current..N-1, deterministic), then its search vocabulary. Search reads only
    the read model, so its rows are written directly, not through 100,000 commands."""
    from projections.documents import rerender
    from projections.models import CatalogWord, ProductCatalog
    from projections.search import recount_facets, words
    from shop.databases import read_connection as connection

    started = time.perf_counter()
    have = ProductCatalog.objects.filter(sku__startswith="CAT-").count()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO projections_productcatalog (product_id, sku, name, category, price,
                stock, reserved, stock_available, version, created_at)
            SELECT md5('bench-catalog-' || i)::uuid, 'CAT-' || i,
                   initcap((%(colors)s::text[])[1 + i %% 12]) || ' '
                   || (%(materials)s::text[])[1 + (i / 12) %% 9] || ' '
                   || (%(nouns)s::text[])[1 + (i / 108) %% 40] || ' ' || i,
                   (%(categories)s::text[])[1 + (i * 7 + i / 40) %% 20],
                   round((1 + (i * 37 %% 49999) / 100.0)::numeric, 2),
                   i %% 5 * 10, 0, i %% 5 * 10, 1,
                   timestamp '2026-01-01' + i * interval '1 minute'
            FROM generate_series(%(start)s, %(stop)s - 1) AS i
            """,
            {"colors": COLORS, "materials": MATERIALS, "nouns": NOUNS,
             "categories": CATEGORIES, "start": have, "stop": args.products},
        )
        cursor.execute("ANALYZE projections_productcatalog")
    vocabulary = words(*COLORS, *MATERIALS, *NOUNS, *CATEGORIES, "cat")
    CatalogWord.objects.bulk_create([CatalogWord(word=w) for w in vocabulary],
                                    ignore_conflicts=True, batch_size=5000)
    recount_facets()
    # Their documents, as the projector would have rendered them.
    rerender(ProductCatalog, ProductCatalog.objects.filter(document=None)
             .order_by("pk").values_list("pk", flat=True))
    # The documents' UPDATE left a dead row per product, and recount_facets wrote the
    # counts and postings again (700,000 postings at 100,000 products, the previous
    # catalog's deleted): vacuum now, so that neither the search rounds nor their
    # baseline meet an autovacuum by luck.
    with connection.cursor() as cursor:
        for table in ("projections_productcatalog", "projections_catalogfacet",
                      "projections_catalogterm", "projections_catalogposting"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("ANALYZE projections_catalogword")
    return {"products": ProductCatalog.objects.count(),
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="job", required=True)
    p = sub.add_parser("seed")
    p.add_argument("--products", type=int, default=200)
    p.add_argument("--histories", type=int, nargs="*", default=[5, 20, 50])
    p.add_argument("--customers", type=int, default=40)
    p = sub.add_parser("generate")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("catch-up")
    p.add_argument("--projection", default="order_history")
    sub.add_parser("decode")
    for name in ("rebuild", "verify"):
        p = sub.add_parser(name)
        p.add_argument("--jobs", type=int, default=1)
    sub.add_parser("sync")
    p = sub.add_parser("catalog")
    p.add_argument("--products", type=int, required=True)
    args = parser.parse_args()
    job = {
        "seed": job_seed,
        "generate": job_generate,
        "catch-up": job_catch_up,
        "decode": job_decode,
        "rebuild": job_rebuild,
        "verify": job_verify,
        "sync": job_sync,
        "catalog": job_catalog,
    }[args.job]
    result = job(args)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
