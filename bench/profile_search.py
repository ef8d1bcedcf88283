#!/usr/bin/env python
"""Where a product search's time goes: in one process (no server, no load generator), or
under load (``--under-load``).

    python bench/profile_search.py [--products N] [--rounds R] [--explain] [--keep]
                                   [--under-load [--seconds S]]

Makes its own database (``shop_bench_profile_search``, dropped at the end), writes a
catalog of ``--products`` rows as the search phase does (``jobs.py catalog``), then
times in this process, through Django's test client (the whole middleware and DRF
stack, no socket), the plain product list and each of the search phase's 50 queries
(``bench/search_catalog.py``), anonymous. Each request's time is its minimum over the
rounds (noise only adds), the list and the searches alternated. Prints the mean per
kind of query and its ratio to the plain list; ``--explain`` adds the read database's
time per statement of the slowest query of each kind (``EXPLAIN ANALYZE``).

``--under-load``: instead, the search phase's gunicorn on that catalog and wrk (as
``run.py``), the plain list and the 50 searches alternated for ``--rounds`` rounds, and
where each request's CPU goes: the CPU seconds of PostgreSQL's processes, of gunicorn's
and of the whole machine (``/proc``, Linux) during a round, per request served. Medians
of the rounds. bench/README.md records runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import in_process_shop  # noqa: E402
from bench.search_catalog import PRODUCT_LIST, search_paths, wrk_scripts  # noqa: E402

DATABASE = "shop_bench_profile_search"
KINDS = ["typo", "prefix + category", "words + price + in_stock", "category by -price",
         "words by price"]


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


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user and system) used so far by the live processes of PostgreSQL
    and of gunicorn, and by the whole machine since boot (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"postgres": 0.0, "gunicorn": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        group = "postgres" if name.startswith("postgres") else name
        if group in used:
            used[group] += (int(fields[11]) + int(fields[12])) / tick
    with open("/proc/stat") as totals:  # user nice system (idle iowait) irq softirq steal
        ticks = [int(n) for n in totals.readline().split()[1:9]]
    used["machine"] = (sum(ticks[:3]) + sum(ticks[5:8])) / tick
    return used


def measure(base: str, plain: Path, search: Path, rounds: int, seconds: float
            ) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """wrk rounds of the list and the searches at ``base``, alternated as the bench's
    own pairs are (``run.alternate``): each round's req/s and CPU ms per request."""
    from bench import loadgen
    from bench.run import CONNECTIONS, alternate

    def rounds_of(name: str, script: Path):
        def one_round() -> dict[str, float]:
            before = cpu_seconds()
            result = loadgen.run_wrk(base, script, connections=CONNECTIONS, duration=seconds)
            after = cpu_seconds()
            served = result["requests"] - result["errors"]
            if result["errors"] or not served:
                raise RuntimeError(f"{name}: {result['errors']} errors of "
                                   f"{result['requests']} requests")
            return {"rps": result["rps"],
                    **{group: (after[group] - before[group]) * 1000 / served
                       for group in after}}
        return one_round

    for script in (plain, search):  # warm: every worker's caches and statements
        loadgen.run_wrk(base, script, connections=CONNECTIONS, duration=2)
    return alternate(rounds, rounds_of("plain list", plain), rounds_of("50 searches", search))


def under_load(rounds: int, seconds: float) -> None:
    """Where a request's CPU goes under wrk: the list and the 50 searches alternated."""
    from bench.procs import Processes, django_env, start_gunicorn
    from bench.run import CONNECTIONS, GUNICORN_THREADS, GUNICORN_WORKERS, median
    from tests.support.processes import free_port

    with tempfile.TemporaryDirectory(prefix="profile-search-") as directory:
        scratch = Path(directory)
        procs = Processes(scratch)
        plain, search = wrk_scripts(scratch)
        try:
            base = start_gunicorn(procs, free_port(),
                                  django_env(os.environ["DATABASE_URL"]),
                                  GUNICORN_WORKERS, GUNICORN_THREADS)
            listed, searched = measure(base, plain, search, rounds, seconds)
        finally:
            procs.stop_all()
    print(f"\nunder wrk ({CONNECTIONS} connections, gunicorn {GUNICORN_WORKERS} x "
          f"{GUNICORN_THREADS} threads), median of {rounds} rounds of {seconds:.0f} s; "
          "CPU ms per request")
    print(f"{'':<14} {'req/s':>8} {'postgres':>9} {'gunicorn':>9} {'machine':>9}")
    for name, runs in (("plain list", listed), ("50 searches", searched)):
        middle = {key: median([run[key] for run in runs]) for key in runs[0]}
        print(f"{name:<14} {middle['rps']:8.1f} {middle['postgres']:9.2f} "
              f"{middle['gunicorn']:9.2f} {middle['machine']:9.2f}")
    ratios = [s["rps"] / p["rps"] for p, s in zip(listed, searched, strict=True)]
    print(f"search req/s / list req/s per round: {', '.join(f'{r:.3f}' for r in ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--under-load", action="store_true",
                        help="CPU per request under wrk instead (gunicorn, Linux)")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="each wrk round's length (--under-load)")
    args = parser.parse_args()
    with in_process_shop(DATABASE, keep=args.keep):
        from django.test import Client

        from bench import jobs

        made = jobs.job_catalog(argparse.Namespace(products=args.products))
        print(f"catalog: {made['products']:,} products in {made['seconds']:.0f} s")
        if args.under_load:
            under_load(args.rounds, args.seconds)
            return
        client = Client()
        paths = search_paths()
        for path in [PRODUCT_LIST, *paths]:  # warm: caches, the vocabulary, compiled statements
            once(client, path)
        best: dict[str, float] = defaultdict(lambda: float("inf"))
        for _ in range(args.rounds):
            for path in paths:
                best[PRODUCT_LIST] = min(best[PRODUCT_LIST], once(client, PRODUCT_LIST))
                best[path] = min(best[path], once(client, path))
        plain = best[PRODUCT_LIST]
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
                print(f"\n{kind}: {worst.removeprefix(PRODUCT_LIST)} ({best[worst]:.2f} ms)")
                for ms, sql in statements(worst):
                    print(f"  {ms:6.2f} ms  {sql}")


if __name__ == "__main__":
    main()
