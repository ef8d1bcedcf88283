#!/usr/bin/env python
"""Where a query request's time goes: one process, no server, no load generator.

    python bench/profile_queries.py [--requests N]

Makes its own database (``shop_bench_profile``, dropped at the end), seeds it as the
bench does (``jobs.py seed``: a customer with 20 orders of 3 lines), then times in
this process, through Django's test client (the whole middleware and DRF stack, no
socket): ``GET /api/queries/orders/`` (the order history), ``/bench/rows/`` (5 rows
of one table, the ``query_history_rps`` baseline) and the product list and a search.
It then profiles the order history and reports the share of each stage per request:
authentication, the checkpoint read, the page's query, the cursor links, rendering.
bench/README.md records a run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import in_process_shop  # noqa: E402

DATABASE = "shop_bench_profile"

#: Stage name -> (file suffix, function name) whose cumulative time is the stage's.
STAGES = {
    "authentication": ("rest_framework/request.py", "_authenticate"),
    "checkpoint read": ("projections/apis.py", "current_position"),
    "page query": ("projections/pages.py", "__getitem__"),  # StoredRows' statement
    "cursor links": ("rest_framework/pagination.py", "get_next_link"),
    "rendering": ("rest_framework/response.py", "rendered_content"),
    "whole request": ("django/core/handlers/base.py", "get_response"),
}


def timed(client, path: str, token: str, requests: int) -> float:
    """Mean milliseconds per request."""
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    for _ in range(20):  # warm: caches, compiled statements
        assert client.get(path, **headers).status_code == 200
    started = time.perf_counter()
    for _ in range(requests):
        client.get(path, **headers)
    return (time.perf_counter() - started) / requests * 1000


def stages(client, path: str, token: str, requests: int) -> dict[str, float]:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        client.get(path, HTTP_AUTHORIZATION=f"Token {token}")
    profile.disable()
    stats = pstats.Stats(profile).stats
    found = {}
    for name, (suffix, function) in STAGES.items():
        total = sum(cumulative for (file, _line, func), (_cc, _nc, _tt, cumulative, _callers)
                    in stats.items() if file.endswith(suffix) and func == function)
        found[name] = total / requests * 1000
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with in_process_shop(DATABASE):
        from django.test import Client

        from bench import jobs

        seed = jobs.job_seed(argparse.Namespace(products=50, histories=[20], customers=1))
        token = seed["history_tokens"]["20"]
        client = Client()
        rows = {
            "GET /api/queries/orders/ (20 orders x 3 lines, a page of 20)":
                timed(client, "/api/queries/orders/", token, args.requests),
            "GET /bench/rows/ (5 rows, DRF serializer; the baseline)":
                timed(client, "/bench/rows/", token, args.requests),
            "GET /api/queries/products/ (first page)":
                timed(client, "/api/queries/products/", "", args.requests),
            "GET /api/queries/products/?q=bench+prodcut&sort=price":
                timed(client, "/api/queries/products/?q=bench+prodcut&sort=price", "",
                      args.requests),
        }
        width = max(len(k) for k in rows)
        print(f"{'request':<{width}}  ms/request (mean of {args.requests}, in-process)")
        for name, ms in rows.items():
            print(f"{name:<{width}}  {ms:6.2f}")
        print()
        print("order history, per request, by stage (cProfile; stages overlap: the "
              "page query runs inside pagination):")
        for name, ms in stages(client, "/api/queries/orders/", token, args.requests).items():
            print(f"  {name:<16} {ms:6.3f} ms")


if __name__ == "__main__":
    main()
