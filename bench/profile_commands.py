#!/usr/bin/env python
"""Where a place-order command's time goes: one process, no server, no load generator.

    python bench/profile_commands.py [--requests N] [--top K]

Makes its own database (``shop_bench_profile_commands``, dropped at the end) and its
own redis-server (the broker the command's trigger enqueues on; no worker), seeds the
bench's products and customers (``jobs.py seed``), then sends ``POST
/api/commands/orders/`` with 2 lines (the ``command_place_order_rps`` body) through
Django's test client (the whole middleware and DRF stack, no socket), under cProfile.
Prints the mean wall and CPU time per command (the CPU is this process's, the
figure the machine's other load moves least), the SQL round trips per command
(psycopg's waits, on Django's connection and the event store's), who ran the
statements, and the top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import in_process_shop  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402

DATABASE = "shop_bench_profile_commands"


def bodies(products: list[str], n: int) -> list[bytes]:
    rng = random.Random(7)
    return [json.dumps({"lines": [{"product_id": p, "quantity": 1}
                                  for p in rng.sample(products, 2)],
                        "shipping_address": f"{i} Bench Street"}).encode()
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="profile-commands-"))).start()
    try:
        with in_process_shop(DATABASE, CELERY_BROKER_URL=redis.url, REDIS_URL=redis.url):
            from django.test import Client

            from bench import jobs

            seed = jobs.job_seed(argparse.Namespace(products=200, histories=[], customers=8))
            tokens = seed["customer_tokens"]
            client = Client()
            sent = bodies(seed["products"], args.requests)

            def place(i: int) -> None:
                response = client.post("/api/commands/orders/", sent[i % len(sent)],
                                       content_type="application/json",
                                       HTTP_AUTHORIZATION=f"Token {tokens[i % len(tokens)]}")
                assert response.status_code == 201, response.content

            for i in range(50):  # warm: caches, prepared statements, every customer's key
                place(i)
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(args.requests):
                place(i)
            wall = (time.perf_counter() - started) / args.requests * 1000
            cpu = (time.process_time() - cpu_started) / args.requests * 1000
            profile = cProfile.Profile()
            profile.enable()
            for i in range(args.requests):
                place(i)
            profile.disable()
            stats = pstats.Stats(profile)
            # One psycopg wait() per statement round trip, on either connection.
            round_trips = sum(nc for (file, _line, func), (_cc, nc, *_rest) in stats.stats.items()
                              if file.endswith("psycopg/connection.py") and func == "wait")
            print(f"place-order, 2 lines: {wall:.2f} ms/command wall, {cpu:.2f} ms of this "
                  f"process's CPU (mean of {args.requests}, in-process, no profiler)")
            print(f"SQL round trips per command: {round_trips / args.requests:.2f} (psycopg "
                  "waits, Django's connection and the event store's)")
            stats.sort_stats("tottime").print_callers(r"psycopg/(cursor|connection).py:\d+\(execute\)")
            stats.print_callers(r"(data_keys|key_ring|for_reading|for_writing|prefetch|decode_many|to_stored_event)")
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
