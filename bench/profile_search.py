#!/usr/bin/env python
"""Where a product search's time goes: one process, no server, no load generator.

    python bench/profile_search.py [--products N] [--rounds R] [--explain] [--keep]

Makes its own database (``shop_bench_profile_search``, dropped at the end), writes a
catalog of ``--products`` rows as the search phase does (``jobs.py catalog``), then
times in this process, through Django's test client (the whole middleware and DRF
stack, no socket), the plain product list and each of the search phase's 50 queries
(``bench/search_catalog.py``), anonymous. Each request's time is its minimum over the
rounds (noise only adds), the list and the searches alternated. Prints the mean per
kind of query and its ratio to the plain list; ``--explain`` adds the read database's
time per statement of the slowest query of each kind (``EXPLAIN ANALYZE``).
bench/README.md records a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import in_process_shop  # noqa: E402
from bench.search_catalog import search_queries  # noqa: E402

DATABASE = "shop_bench_profile_search"
KINDS = ["typo", "prefix + category", "words + price + in_stock", "category by -price",
         "words by price"]
PLAIN = "/api/queries/products/"


def once(client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.content[:300]}")
    return elapsed


def statements(path: str) -> list[tuple[float, str]]:
    """The read database's statements of one request, each with its own time (ms)."""
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["read"]) as captured:
        Client().get(path)
    timed = []
    with connections["read"].cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0][0]
            timed.append((plan["Execution Time"] + plan["Planning Time"], sql[:160]))
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    with in_process_shop(DATABASE, keep=args.keep):
        from django.test import Client

        from bench import jobs

        made = jobs.job_catalog(argparse.Namespace(products=args.products))
        print(f"catalog: {made['products']:,} products in {made['seconds']:.0f} s")
        client = Client()
        paths = [f"{PLAIN}?{q}" for q in search_queries()]
        for path in [PLAIN, *paths]:  # warm: caches, the vocabulary, compiled statements
            once(client, path)
        best: dict[str, float] = defaultdict(lambda: float("inf"))
        for _ in range(args.rounds):
            for path in paths:
                best[PLAIN] = min(best[PLAIN], once(client, PLAIN))
                best[path] = min(best[path], once(client, path))
        plain = best[PLAIN]
        by_kind: dict[str, list[str]] = defaultdict(list)
        for i, path in enumerate(paths):
            by_kind[KINDS[i % len(KINDS)]].append(path)
        mean = sum(best[p] for p in paths) / len(paths)
        print(f"\nper request, minimum of {args.rounds} rounds, in-process, ms "
              f"({args.products:,} products)")
        print(f"{'plain list (first page)':<28} {plain:7.2f}")
        for kind, kind_paths in by_kind.items():
            kind_mean = sum(best[p] for p in kind_paths) / len(kind_paths)
            print(f"{kind:<28} {kind_mean:7.2f}   worst {max(best[p] for p in kind_paths):6.2f}")
        print(f"{'50 searches, mean':<28} {mean:7.2f}   ratio to the list {plain / mean:.3f}")
        if args.explain:
            for kind, kind_paths in by_kind.items():
                worst = max(kind_paths, key=lambda p: best[p])
                print(f"\n{kind}: {worst.removeprefix(PLAIN)} ({best[worst]:.2f} ms)")
                for ms, sql in statements(worst):
                    print(f"  {ms:6.2f} ms  {sql}")


if __name__ == "__main__":
    main()
