"""HTTP clients run as their own processes (never inside the server's process).

    python bench/clients.py latency URL TOKEN --requests N [--follow-next]
        sequential GETs on one keep-alive connection; a "request" follows the ``next``
        links to the end when --follow-next, so it fetches the whole history.
    python bench/clients.py freshness URL --config FILE --out FILE
        sustain RATE order commands/s for DURATION s; after each 201, time
        GET /api/queries/orders/?min_position=<position>&wait=5 until its 200.

Each prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# One keep-alive HTTP/1.1 connection with a token: the tests' client.
from tests.support.http import Connection as Client  # noqa: E402


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def fetch(client: Client, path: str, follow_next: bool) -> int:
    """GET ``path`` (and its next pages); return the number of results."""
    count = 0
    while path:
        response = client.request("GET", path)
        status, body = response.status, response.body
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        count += len(body.get("results", []))
        path = path_of(body["next"]) if follow_next and body.get("next") else ""
    return count


def cmd_latency(args: argparse.Namespace) -> dict:
    base = urlsplit(args.url)
    client = Client(f"{base.scheme}://{base.netloc}", args.token)
    path = path_of(args.url)
    for _ in range(args.warmup):
        results = fetch(client, path, args.follow_next)
    samples = []
    deadline = time.monotonic() + args.max_seconds
    for _ in range(args.requests):
        started = time.perf_counter()
        results = fetch(client, path, args.follow_next)
        samples.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline and len(samples) >= 5:
            break
    return {
        "results": results,
        "requests": len(samples),
        "median_ms": statistics.median(samples),
        "mean_ms": statistics.fmean(samples),
        "p90_ms": sorted(samples)[int(0.9 * (len(samples) - 1))],
    }


def cmd_freshness(args: argparse.Namespace) -> dict:
    """Open loop: command k is due at start + k/rate, whoever is free sends it."""
    config = json.loads(Path(args.config).read_text())
    base, tokens, bodies = args.url, config["tokens"], config["bodies"]
    rate, duration = config["rate"], config["duration"]
    total = int(rate * duration)
    lock = threading.Lock()
    state = {"next": 0}
    freshness: list[float] = []  # ms from the command's response to visible
    command_ms: list[float] = []
    lateness: list[float] = []  # how late each command went out (driver saturated?)
    failures: list[str] = []
    plain_read_ms: list[float] = []
    behind: list[int] = []  # 503 projection_behind answers (each is retried)
    stop = threading.Event()
    start = time.perf_counter() + 0.2

    def sender(index: int) -> None:
        client = Client(base, tokens[0])
        while True:
            with lock:
                k = state["next"]
                state["next"] += 1
            if k >= total:
                return
            if time.perf_counter() > start + duration + 1.0:
                # Saturated: the open loop is over; what was not sent is reported.
                with lock:
                    state["not_sent"] = state.get("not_sent", 0) + 1
                continue
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            token = tokens[k % len(tokens)]
            t0 = time.perf_counter()
            lateness.append((t0 - due) * 1000)
            try:
                response = client.request("POST", "/api/commands/orders/",
                                          bodies[k % len(bodies)], token)
                status, body = response.status, response.body
                t1 = time.perf_counter()
                if status != 201:
                    failures.append(f"POST {status} {body}")
                    continue
                command_ms.append((t1 - t0) * 1000)
                query = (f"/api/queries/orders/?min_position={body['position']}"
                         f"&wait={config['wait']}")
                while True:
                    reply = client.request("GET", query, token=token)
                    status = reply.status
                    if status == 200:
                        break
                    if status != 503:
                        raise RuntimeError(f"GET {status} {reply.body}")
                    behind.append(k)
                    if time.perf_counter() - t1 > 60:
                        raise RuntimeError("not visible after 60 s")
                freshness.append((time.perf_counter() - t1) * 1000)
            except Exception as exc:  # noqa: BLE001 - reported, never hidden
                failures.append(repr(exc))

    def plain_reader() -> None:
        """The baseline: the same query without min_position, under the same load."""
        client = Client(base, tokens[0])
        while not stop.is_set():
            t0 = time.perf_counter()
            if client.request("GET", "/api/queries/orders/").status == 200:
                plain_read_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(i,), daemon=True)
               for i in range(config["concurrency"])]
    reader = threading.Thread(target=plain_reader, daemon=True)
    wall0 = time.perf_counter()
    for thread in threads:
        thread.start()
    reader.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()
    wall = time.perf_counter() - wall0
    with open(args.out, "w") as out:
        json.dump({"freshness_ms": freshness, "command_ms": command_ms,
                   "plain_read_ms": plain_read_ms}, out)
    return {
        "commands": total,
        "not_sent": state.get("not_sent", 0),
        "ok": len(freshness),
        "failures": len(failures),
        "behind_503": len(behind),
        "failure_examples": failures[:5],
        "achieved_rate": len(command_ms) / wall,
        "wall_seconds": wall,
        "late_p99_ms": sorted(lateness)[int(0.99 * (len(lateness) - 1))] if lateness else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=20)
    p.add_argument("--follow-next", action="store_true")
    p = sub.add_parser("freshness")
    p.add_argument("url")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    result = {"latency": cmd_latency, "freshness": cmd_freshness}[args.cmd](args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
