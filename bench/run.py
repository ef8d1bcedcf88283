#!/usr/bin/env python
"""The shop's benchmark: one command, every metric a ratio to a baseline of the same run.

    python bench/run.py [--quick] [--keep] [--only PHASE[,PHASE...]]

Phases: http, freshness, log, rebuild_freshness, search, split. ``--only`` runs some of
them and writes ``bench/results/only-<phases>.json`` (``latest.json`` is a whole run's).

Runs against real PostgreSQL (its own databases ``shop_bench``, ``shop_bench_log``, ...,
created and dropped here; the split phase also a throwaway primary holding the read
database and a streaming standby of it), its own redis-server on a free port, gunicorn
(gthread) and a Celery prefork worker + beat; HTTP load comes from wrk. Prints a table, writes
``bench/results/latest.json`` and ``bench/results/freshness.png``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen  # noqa: E402
from bench.plot import MATPLOTLIB_MISSING, percentile, plot_freshness  # noqa: E402
from bench.procs import (  # noqa: E402
    PG_HOST,
    PG_USER,
    PYTHON,
    ROOT,
    Processes,
    django_env,
    drop_database,
    job,
    psql,
    recreate_database,
    run_json,
    start_celery,
    start_gunicorn,
    start_redis,
)
from bench.search_catalog import search_queries, wrk_scripts  # noqa: E402
from tests.support.http import request  # noqa: E402
from tests.support.processes import free_port, wait_until  # noqa: E402
from tests.support.replica import Cluster, pg_bin  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# BENCH_DB_SUFFIX: a suffix for every database name, so two runs on one server (two
# worktrees) do not drop each other's databases.
_SUFFIX = os.environ.get("BENCH_DB_SUFFIX", "")
HTTP_DB, LOG_DB, SEARCH_DB = (f"shop_bench{_SUFFIX}", f"shop_bench_log{_SUFFIX}",
                              f"shop_bench_search{_SUFFIX}")
# The split phase: the write database on the machine's server, the read database on the
# throwaway primary (with its standby); and the single-database comparison.
SPLIT_DB, READ_DB, SINGLE_DB = (f"shop_bench_split{_SUFFIX}", f"shop_bench_read{_SUFFIX}",
                                f"shop_bench_single{_SUFFIX}")
PHASES = ("http", "freshness", "log", "rebuild_freshness", "search", "split")

PROFILES = {
    "quick": {
        "rounds": 3, "wrk_seconds": 3, "wrk_warmup": 1, "latency_requests": 8,
        "freshness_rounds": 2, "freshness_seconds": 7, "rate": 100,
        "log_events": 100_000, "backlog": 30_000, "catch_up_rounds": 3,
        "search_small": 2_000, "search_large": 20_000, "split_log_events": 30_000,
    },
    "full": {
        "rounds": 5, "wrk_seconds": 10, "wrk_warmup": 3, "latency_requests": 30,
        "freshness_rounds": 3, "freshness_seconds": 30, "rate": 100,
        "log_events": 1_000_000, "backlog": 100_000, "catch_up_rounds": 5,
        "search_small": 10_000, "search_large": 100_000, "split_log_events": 200_000,
    },
}
CONNECTIONS = 8
FLASH_SALE_CONNECTIONS = 32
GUNICORN_WORKERS, GUNICORN_THREADS = 4, 4
CELERY_CONCURRENCY = 2

# name: [(field, operator, target)], field is "value" or "ratio".
GOALS = {
    "query_history_rps": [("ratio", ">=", 0.9)],
    "query_vs_write_model_5": [("ratio", ">=", 5)],
    "query_vs_write_model_50": [("ratio", ">=", 30)],
    "search_rps": [("ratio", ">=", 0.6)],
    "search_p99_ms": [("ratio", "<=", 1.5)],
    "command_place_order_rps": [("ratio", ">=", 0.35)],
    "flash_sale_rps": [("ratio", ">=", 0.7)],
    "idempotent_command_rps": [("ratio", ">=", 0.85)],
    "projection_catch_up_eps": [("value", ">=", 15_000), ("ratio", ">=", 0.3)],
    "rebuild_eps": [("value", ">=", 12_000)],
    "rebuild_peak_rss_mb": [("value", "<=", 300), ("ratio", "<=", 1.25)],
    "freshness_p50_ms": [("value", "<=", 30)],
    "freshness_p99_ms": [("value", "<=", 200)],
    "rebuild_freshness_p99_ms": [("ratio", "<=", 2), ("behind_503", "<=", 0)],
    "query_history_rps_replica": [("ratio", ">=", 0.9)],
    "read_isolation_p99": [("ratio", "<=", 1.5)],
    "command_during_rebuild": [("ratio", ">=", 0.8)],
}
# Orders per second placed during (and before) a rebuild of the whole log.
REBUILD_FRESHNESS_RATE = 20
# rebuild_eps and verify_eps: projections replayed side by side (rebuild_projections
# --jobs), one per core of this machine. The rebuild during live traffic
# (rebuild_freshness) runs as an operator would by default: --jobs 1.
REBUILD_JOBS = min(os.cpu_count() or 1, 3)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- preflight and machine ------------------------------------------------------------


def preflight(phases: tuple[str, ...]) -> None:
    problems = []
    if shutil.which("wrk") is None:
        problems.append(loadgen.WRK_MISSING)
    if shutil.which("redis-server") is None:
        problems.append("redis-server is not installed: sudo apt-get install -y redis-server")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        problems.append(MATPLOTLIB_MISSING)
    try:
        psql("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"PostgreSQL at 127.0.0.1:5432 (user postgres) is unreachable: {exc}")
    if "split" in phases and pg_bin() is None:
        problems.append("the split phase needs PostgreSQL's server binaries (initdb, "
                        "pg_basebackup, pg_ctl): sudo apt-get install -y postgresql")
    if problems:
        raise SystemExit("Cannot run the benchmark:\n\n" + "\n\n".join(problems))


def _first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "unknown"


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                                capture_output=True, text=True).stdout.strip())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": psql("SELECT version()").split(" on ")[0],
        "redis": _first_line(["redis-server", "--version"]),
        "wrk": _first_line(["wrk", "--version"]),
        "gunicorn": _first_line([str(Path(PYTHON).parent / "gunicorn"), "--version"]),
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def migrate(env: dict[str, str]) -> None:
    """Migrate the write database, and the read database when it is one of its own."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if env.get("READ_DATABASE_URL"):
        subprocess.run([PYTHON, "manage.py", "migrate", "--database", "read", "-v0"],
                       cwd=ROOT, env=env, check=True)


# --- phases ------------------------------------------------------------------------


def alternate(rounds: int, first, second) -> tuple[list, list]:
    """Run two measurements ``rounds`` times, alternating which goes first."""
    a, b = [], []
    for r in range(rounds):
        if r % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def wrk_pair(base: str, cfg: dict, target, baseline, label: str,
             connections: int = CONNECTIONS, baseline_base: str | None = None) -> dict:
    """wrk rounds of ``target`` against ``baseline`` (the same server, or the one at
    ``baseline_base``), alternating."""
    baseline_base = baseline_base or base

    def runner(url, script):
        return lambda: loadgen.run_wrk(url, script, connections=connections,
                                       duration=cfg["wrk_seconds"])

    for url, script in ((base, target), (baseline_base, baseline)):  # warm up every worker
        loadgen.run_wrk(url, script, connections=connections, duration=cfg["wrk_warmup"])
    t_runs, b_runs = alternate(cfg["rounds"], runner(base, target),
                               runner(baseline_base, baseline))
    for run in t_runs + b_runs:
        if run["errors"] > 0.01 * max(run["requests"], 1):
            say(f"  WARNING {label}: {run['errors']} errors of {run['requests']} requests")
    value = median([r["rps"] for r in t_runs])
    base_value = median([r["rps"] for r in b_runs])
    say(f"  {label}: {value:,.0f} req/s vs baseline {base_value:,.0f} req/s")
    return {"value": value, "baseline": base_value, "target_runs": t_runs,
            "baseline_runs": b_runs}


def phase_http(base: str, seed: dict, cfg: dict, tmp: Path) -> dict:
    out: dict = {}
    if os.environ.get("BENCH_COMMANDS_ONLY"):  # the command metrics alone (a quick A/B)
        return phase_commands(base, seed, cfg, tmp, out)
    token20 = seed["history_tokens"]["20"]
    say("query_history_rps: GET /api/queries/orders/ (20 orders x 3 lines) vs 5 rows")
    out["query_history_rps"] = wrk_pair(
        base, cfg,
        loadgen.write_script(tmp, "query", "GET", "/api/queries/orders/", [token20]),
        loadgen.write_script(tmp, "rows_get", "GET", "/bench/rows/", [token20]),
        "query_history_rps",
    )

    say("query_vs_write_model: whole history from the read model vs from the event store")
    for n in ("5", "20", "50"):
        token = seed["history_tokens"][n]

        def latency(path: str, follow: bool, token=token) -> dict:
            args = [PYTHON, str(ROOT / "bench" / "clients.py"), "latency", base + path, token,
                    "--requests", str(cfg["latency_requests"])]
            return run_json(args + (["--follow-next"] if follow else []), os.environ.copy())

        reads, writes = alternate(
            cfg["rounds"],
            # The whole history in one page (the API allows up to 100 a page).
            lambda latency=latency: latency("/api/queries/orders/?page_size=100", True),
            lambda latency=latency: latency("/bench/write-side/orders/", False),
        )
        if {r["results"] for r in reads + writes} != {int(n)}:
            raise RuntimeError(f"history of {n}: read {reads[0]['results']}, "
                               f"write {writes[0]['results']} orders")
        read_ms = median([r["median_ms"] for r in reads])
        write_ms = median([r["median_ms"] for r in writes])
        say(f"  {n} orders: write side {write_ms:.1f} ms, read model {read_ms:.1f} ms "
            f"({write_ms / read_ms:.1f}x)")
        out[f"query_vs_write_model_{n}"] = {"value": write_ms, "baseline": read_ms,
                                            "read_runs": reads, "write_runs": writes}

    return phase_commands(base, seed, cfg, tmp, out)


def phase_commands(base: str, seed: dict, cfg: dict, tmp: Path, out: dict) -> dict:
    say("command_place_order_rps: POST /api/commands/orders/ (2 lines) vs insert one row")
    tokens = seed["customer_tokens"][:CONNECTIONS]
    out["command_place_order_rps"] = wrk_pair(
        base, cfg,
        loadgen.write_script(tmp, "order", "POST", "/api/commands/orders/", tokens,
                             loadgen.order_bodies(seed["products"])),
        loadgen.write_script(tmp, "rows_post", "POST", "/bench/rows/", tokens,
                             [{"name": f"row {i}", "value": i} for i in range(50)]),
        "command_place_order_rps",
    )

    say("idempotent_command_rps: place-order with a fresh Idempotency-Key vs without")
    bodies = loadgen.order_bodies(seed["products"])
    out["idempotent_command_rps"] = wrk_pair(
        base, cfg,
        loadgen.write_script(tmp, "order_keyed", "POST", "/api/commands/orders/", tokens,
                             bodies, idempotency_keys=True),
        loadgen.write_script(tmp, "order_unkeyed", "POST", "/api/commands/orders/", tokens,
                             bodies),
        "idempotent_command_rps",
    )

    say(f"flash_sale_rps: {FLASH_SALE_CONNECTIONS} connections order 1 unit of one product "
        f"vs of {len(seed['products'])} products")
    flash_tokens = seed["customer_tokens"][:FLASH_SALE_CONNECTIONS]
    flash = wrk_pair(
        base, cfg,
        loadgen.write_script(tmp, "flash_sale", "POST", "/api/commands/orders/", flash_tokens,
                             loadgen.one_unit_bodies(seed["products"][:1])),
        loadgen.write_script(tmp, "flash_spread", "POST", "/api/commands/orders/",
                             flash_tokens, loadgen.one_unit_bodies(seed["products"])),
        "flash_sale_rps", connections=FLASH_SALE_CONNECTIONS,
    )
    # wrk counts every status >= 400 (and socket errors) as an error: the non-201s.
    flash["non_201"] = sum(run["errors"] for run in flash["target_runs"])
    flash["baseline_non_201"] = sum(run["errors"] for run in flash["baseline_runs"])
    say(f"  flash sale non-201 responses: {flash['non_201']} "
        f"(spread: {flash['baseline_non_201']})")
    out["flash_sale_rps"] = flash
    return out


def phase_freshness(base: str, seed: dict, cfg: dict, tmp: Path, rate: float,
                    rounds_count: int, label: str, seconds: float | None = None) -> dict:
    seconds = seconds or cfg["freshness_seconds"]
    say(f"freshness ({label}): {rate:g} commands/s for {seconds:g} s "
        f"x {rounds_count} rounds, each read back with ?min_position")
    config = tmp / f"freshness-{label}.json"
    config.write_text(json.dumps({
        "tokens": seed["customer_tokens"],
        "bodies": loadgen.order_bodies(seed["products"], seed=11),
        "rate": rate,
        "duration": seconds,
        "concurrency": 32,
        "wait": 5,
    }))
    rounds, samples, plain = [], [], []
    for r in range(rounds_count):
        data_file = tmp / f"freshness-{label}-{r}.json"
        summary = run_json(
            [PYTHON, str(ROOT / "bench" / "clients.py"), "freshness", base,
             "--config", str(config), "--out", str(data_file)],
            os.environ.copy(),
        )
        data = json.loads(data_file.read_text())
        summary.update(
            p50_ms=percentile(data["freshness_ms"], 50),
            p99_ms=percentile(data["freshness_ms"], 99),
            plain_p50_ms=percentile(data["plain_read_ms"], 50),
            plain_p99_ms=percentile(data["plain_read_ms"], 99),
            command_p50_ms=percentile(data["command_ms"], 50),
            command_p99_ms=percentile(data["command_ms"], 99),
        )
        say(f"  round {r + 1}: p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
            f" ({summary['ok']}/{summary['commands']} ok, "
            f"{summary['achieved_rate']:.0f} commands/s)")
        rounds.append(summary)
        samples += data["freshness_ms"]
        plain += data["plain_read_ms"]
    return {"rate": rate, "rounds": rounds, "samples": samples, "plain": plain}


def phase_log(env: dict[str, str], cfg: dict) -> dict:
    """Catch-up and rebuild, on a log generated in-process (no HTTP)."""
    n = cfg["log_events"]
    small = n // 10
    out: dict = {"generate": []}

    def generate(events: int, seed: int) -> None:
        if events > 0:
            result = job("generate", "--events", str(events), "--seed", str(seed), env=env)
            out["generate"].append(result)
            say(f"  appended {result['events']:,} events at "
                f"{result['events_per_s']:,.0f}/s (head {result['head']:,})")

    def rebuild(label: str) -> None:
        decode = job("decode", env=env)
        result = job("rebuild", "--jobs", str(REBUILD_JOBS), env=env)
        out[f"decode_{label}"], out[f"rebuild_{label}"] = decode, result
        say(f"  rebuild of {result['head']:,} events (--jobs {REBUILD_JOBS}): "
            f"{result['log_events_per_s']:,.0f} events/s "
            f"(read+decode {decode['log_events_per_s']:,.0f}/s), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")

    say(f"rebuild at 1/10 of the log ({small:,} events)")
    generate(small, 1)
    rebuild("small")

    say(f"projection_catch_up_eps: {cfg['catch_up_rounds']} backlogs of "
        f"{cfg['backlog']:,} events, order_history caught up by one worker")
    out["catch_up"] = []
    for r in range(cfg["catch_up_rounds"]):
        generate(cfg["backlog"], 100 + r)
        result = job("catch-up", "--projection", "order_history", env=env)
        out["catch_up"].append(result)
        say(f"  round {r + 1}: applied {result['applied']:,} events at "
            f"{result['applied_per_s']:,.0f}/s ({result['log_events_per_s']:,.0f} log "
            f"events/s); read+decode only: {result['decoded_per_s']:,.0f}/s")

    head = out["catch_up"][-1]["head"] if out["catch_up"] else small
    say(f"rebuild at the full log ({n:,} events)")
    generate(n - head, 999)
    rebuild("full")
    one = job("rebuild", "--jobs", "1", env=env)
    out["rebuild_full_one_job"] = one
    say(f"  the same, one projection after the other (--jobs 1, the default): "
        f"{one['log_events_per_s']:,.0f} events/s")
    out["verify_full"] = result = job("verify", "--jobs", str(REBUILD_JOBS), env=env)
    say(f"  verify_projections of {result['head']:,} events: "
        f"{result['log_events_per_s']:,.0f} events/s, drift: {result['drifted']}")
    if result["drifted"]:
        say(f"  WARNING: the rebuilt read models differ from the log: {result['output']}")
    return out


def phase_rebuild_freshness(procs: Processes, log_url: str, cfg: dict, tmp: Path,
                            rebuild_seconds: float) -> dict:
    """Orders at REBUILD_FRESHNESS_RATE/s on the shop with the whole log, read back with
    ?min_position: first without a rebuild (the baseline), then while
    ``rebuild_projections`` (every projection, blue/green) runs in its own process."""
    broker = start_redis(procs, free_port())
    env = django_env(log_url, broker)
    seed = job("seed", "--histories", "--customers", "20", env=env)
    base = start_gunicorn(procs, free_port(), env, GUNICORN_WORKERS, GUNICORN_THREADS)
    start_celery(procs, env, CELERY_CONCURRENCY)
    window = max(8.0, round(0.9 * rebuild_seconds))
    rate = REBUILD_FRESHNESS_RATE
    job("sync", env=env)
    baseline = phase_freshness(base, seed, cfg, tmp, rate, 1, "rebuild_baseline", window)
    job("sync", env=env)
    say(f"rebuild_freshness: rebuild_projections (whole log, {head_of(env):,} events) "
        "while orders keep coming")
    started = time.monotonic()
    rebuild = procs.start(
        "rebuild", [PYTHON, "manage.py", "rebuild_projections", "--interval", "2"], env
    )
    during = phase_freshness(base, seed, cfg, tmp, rate, 1, "during_rebuild", window)
    covered = rebuild.poll() is None  # still rebuilding when the window closed
    rebuild.wait(timeout=3600)
    seconds = time.monotonic() - started
    if rebuild.returncode != 0:
        raise RuntimeError("rebuild_projections failed:\n" + procs.log_tail("rebuild"))
    say(f"  the rebuild took {seconds:.1f} s; the {window:g} s window "
        f"{'lay within it' if covered else 'outlasted it'}")
    for name in ("celery-beat", "celery-worker", "gunicorn", "redis", "rebuild"):
        procs.stop(name)
    return {"rate": rate, "window_seconds": window, "rebuild_seconds": seconds,
            "window_within_rebuild": covered, "baseline": baseline["rounds"],
            "during": during["rounds"]}


def phase_search(procs: Processes, cfg: dict, tmp: Path) -> dict:
    """Search over a catalog of ``search_large`` products (its own database, written by
    ``jobs.py catalog``): wrk over 50 queries (each a typo, a filter or a sort) against
    the plain product list's first page, and the search's p99 at ``search_small`` then
    at ``search_large`` products (one gunicorn, the catalog grown in between). Both
    sizes are measured the same way: the searches' rounds alternated with the list's."""
    url = recreate_database(SEARCH_DB)
    env = django_env(url)
    migrate(env)
    plain, search = wrk_scripts(tmp)
    small, large = cfg["search_small"], cfg["search_large"]
    job("catalog", "--products", str(small), env=env)
    base = start_gunicorn(procs, free_port(), env, GUNICORN_WORKERS, GUNICORN_THREADS)
    say(f"search_p99_ms: the same pairs at {small:,} products")
    at_small = wrk_pair(base, cfg, search, plain, f"search_rps at {small:,}")
    job("catalog", "--products", str(large), env=env)
    say(f"search_rps: 50 searches vs the plain product list, {large:,} products")
    pair = wrk_pair(base, cfg, search, plain, "search_rps")
    procs.stop("gunicorn")
    p99_small = median([r["latency_p99_us"] / 1000 for r in at_small["target_runs"]])
    p99_large = median([r["latency_p99_us"] / 1000 for r in pair["target_runs"]])
    say(f"  search p99: {p99_large:.1f} ms at {large:,} products, {p99_small:.1f} ms at "
        f"{small:,}; search req/s: {pair['value']:,.0f} at {large:,}, "
        f"{at_small['value']:,.0f} at {small:,} ({pair['value'] / at_small['value']:.3f})")
    return {"search_rps": pair, "small_runs": at_small["target_runs"], "small_pair": at_small,
            "p99_small_ms": p99_small, "p99_large_ms": p99_large, "products": [small, large],
            "queries": search_queries()}


# --- the split topology: the read side's own database and a streaming replica ---------


def read_from(base: str, token: str) -> str:
    """Which database served the history: ``primary`` or a replica's alias."""
    response = request("GET", base + "/api/queries/orders/", token=token, timeout=10)
    if response.status != 200:
        raise RuntimeError(f"GET /api/queries/orders/: {response.status} {response.body}")
    return response.headers.get("x-read-from", "")


class ServedFrom:
    """Samples ``X-Read-From`` of the history endpoint five times a second (in a thread
    of this process) while a measurement runs: where its requests were served from."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.counts: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.counts[read_from(self.base, self.token)] += 1
            except Exception as exc:  # noqa: BLE001
                self.counts[f"error: {type(exc).__name__}"] += 1

    def __enter__(self) -> ServedFrom:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class ReplicaLag:
    """Samples the standby's replay lag five times a second (in a thread of this
    process) from its primary's ``pg_stat_replication``: ``replay_lag`` (the time from
    the primary flushing WAL to the standby having replayed it; NULL once the standby
    has caught up and nothing new came: 0) and the bytes sent but not yet replayed.
    Measured from outside the shop, beside what the shop's own health and ``/metrics``
    say."""

    SQL = ("SELECT coalesce(extract(epoch FROM replay_lag), 0)::float8, "
           "coalesce(pg_wal_lsn_diff(sent_lsn, replay_lsn), 0)::float8 "
           "FROM pg_stat_replication")

    def __init__(self, port: int) -> None:
        self.port = port
        self.seconds: list[float] = []
        self.behind_bytes: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(host=PG_HOST, port=self.port, user=PG_USER,
                                   dbname="postgres", autocommit=True, connect_timeout=5,
                                   options="-c statement_timeout=2000")
        except psycopg.Error:
            self.errors += 1
            return
        with conn:
            while not self._stop.wait(0.2):
                try:
                    row = conn.execute(self.SQL).fetchone()
                except psycopg.Error:
                    self.errors += 1
                    continue
                if row is None:  # no standby connected
                    self.errors += 1
                    continue
                self.seconds.append(row[0])
                self.behind_bytes.append(row[1])

    def summary(self) -> dict:
        lags = sorted(self.seconds) or [0.0]
        return {"samples": len(self.seconds), "errors": self.errors,
                "p50_s": percentile(lags, 50), "p99_s": percentile(lags, 99),
                "max_s": lags[-1], "max_behind_bytes": max(self.behind_bytes, default=0.0)}

    def __enter__(self) -> ReplicaLag:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class RebuildLoop:
    """``rebuild_projections`` (all projections, blue/green, as an operator runs it by
    default: ``--jobs 1``, at ``PROJECTION_REBUILD_NICE`` and
    ``PROJECTION_REBUILD_DUTY_CYCLE``) in a process of its own,
    started again each time it finishes until the block ends, so that a rebuild runs
    through the whole measurement whatever the log's size. Leaving the block waits for
    the running rebuild to finish (a rebuild is not interrupted halfway)."""

    def __init__(self, procs: Processes, env: dict[str, str]) -> None:
        self.procs, self.env = procs, env
        self.seconds: list[float] = []
        self.failure = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            name = f"rebuild-{len(self.seconds) + 1}"
            started = time.monotonic()
            popen = self.procs.start(
                name, [PYTHON, "manage.py", "rebuild_projections", "--interval", "2"],
                self.env)
            popen.wait()
            if popen.returncode != 0:
                self.failure = self.procs.log_tail(name)
                self.procs.stop(name)
                return
            self.seconds.append(time.monotonic() - started)
            self.procs.stop(name)

    def __enter__(self) -> RebuildLoop:
        self._thread.start()
        time.sleep(1.0)  # the rebuild's process is up and replaying
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.failure:
            raise RuntimeError("rebuild_projections failed:\n" + self.failure)


def prepare_topology(env: dict[str, str], cfg: dict) -> dict:
    """Migrate, write a log of ``split_log_events`` (what a rebuild replays), then the
    users, products and order histories (their projections caught up)."""
    migrate(env)
    events = cfg["split_log_events"]
    generated = job("generate", "--events", str(events), "--seed", "5", env=env)
    say(f"  appended {generated['events']:,} events at {generated['events_per_s']:,.0f}/s")
    return job("seed", env=env)


def isolation(procs: Processes, env: dict[str, str], base: str, seed: dict, cfg: dict,
              tmp: Path, label: str, lag_port: int | None = None) -> dict:
    """wrk rounds of the history query (its p99) and of place-order (req/s): first
    without a rebuild, then while ``RebuildLoop`` keeps one running. ``lag_port``: the
    read primary whose standby's replay lag ``ReplicaLag`` samples meanwhile."""
    token = seed["history_tokens"]["20"]
    history = loadgen.write_script(tmp, f"isolation_history_{label}", "GET",
                                   "/api/queries/orders/", [token])
    orders = loadgen.write_script(
        tmp, f"isolation_order_{label}", "POST", "/api/commands/orders/",
        seed["customer_tokens"][:CONNECTIONS], loadgen.order_bodies(seed["products"]))

    def wrk(script: Path, seconds: float) -> dict:
        return loadgen.run_wrk(base, script, connections=CONNECTIONS, duration=seconds)

    def block() -> dict:
        runs: dict = {"history": [], "orders": []}
        for _ in range(cfg["rounds"]):
            runs["history"].append(wrk(history, cfg["wrk_seconds"]))
            runs["orders"].append(wrk(orders, cfg["wrk_seconds"]))
        for run in runs["history"] + runs["orders"]:
            if run["errors"] > 0.01 * max(run["requests"], 1):
                say(f"  WARNING {label}: {run['errors']} errors of {run['requests']} requests")
        return runs

    for script in (history, orders):
        wrk(script, cfg["wrk_warmup"])

    def lag() -> contextlib.AbstractContextManager:
        return ReplicaLag(lag_port) if lag_port else contextlib.nullcontext()

    job("sync", env=env)
    with ServedFrom(base, token) as quiet_from, lag() as quiet_lag:
        quiet = block()
    job("sync", env=env)
    with RebuildLoop(procs, env) as rebuilds, ServedFrom(base, token) as during_from, \
            lag() as during_lag:
        during = block()
    out = {
        "history_p99_ms": median([r["latency_p99_us"] / 1000 for r in during["history"]]),
        "baseline_history_p99_ms": median([r["latency_p99_us"] / 1000
                                           for r in quiet["history"]]),
        "orders_rps": median([r["rps"] for r in during["orders"]]),
        "baseline_orders_rps": median([r["rps"] for r in quiet["orders"]]),
        "rebuild_seconds": rebuilds.seconds,
        "served_from": dict(during_from.counts),
        "baseline_served_from": dict(quiet_from.counts),
        "runs": during,
        "baseline_runs": quiet,
    }
    out["history_p99_ratio"] = out["history_p99_ms"] / out["baseline_history_p99_ms"]
    out["orders_ratio"] = out["orders_rps"] / out["baseline_orders_rps"]
    if lag_port:
        out["replica_lag"], out["baseline_replica_lag"] = during_lag.summary(), quiet_lag.summary()
        for when, seen in (("during the rebuilds", out["replica_lag"]),
                           ("without", out["baseline_replica_lag"])):
            say(f"  replica replay lag {when}: p50 {seen['p50_s'] * 1000:.1f} ms, "
                f"p99 {seen['p99_s'] * 1000:.1f} ms, max {seen['max_s'] * 1000:.1f} ms, "
                f"at most {seen['max_behind_bytes'] / 1e6:.1f} MB not yet replayed "
                f"({seen['samples']} samples)")
    say(f"  {label}: history p99 {out['history_p99_ms']:.1f} ms during a rebuild, "
        f"{out['baseline_history_p99_ms']:.1f} ms without ({out['history_p99_ratio']:.2f}); "
        f"place-order {out['orders_rps']:,.0f} req/s during, "
        f"{out['baseline_orders_rps']:,.0f} without ({out['orders_ratio']:.2f}); "
        f"{len(rebuilds.seconds)} rebuild(s) finished; served from {out['served_from']}")
    return out


def stop_servers(procs: Processes, *gunicorns: str) -> None:
    for name in ("celery-beat", "celery-worker", *gunicorns, "redis"):
        procs.stop(name)


def phase_split(procs: Processes, cluster: Cluster, cfg: dict, tmp: Path) -> dict:
    """The split topology (``DATABASE_URL`` on the machine's PostgreSQL,
    ``READ_DATABASE_URL`` on ``cluster``'s primary, its standby as the one replica) for
    every process started here; then the same isolation rounds on one database."""
    write_url = recreate_database(SPLIT_DB)
    psql(f'CREATE DATABASE "{READ_DB}"', port=cluster.primary.port)
    broker = start_redis(procs, free_port())
    env = django_env(write_url, broker, READ_DATABASE_URL=cluster.primary.url(READ_DB))
    replica_env = {**env, "READ_REPLICA_URLS": cluster.standby.url(READ_DB)}
    say(f"split topology: write {write_url}, read {env['READ_DATABASE_URL']}, "
        f"replica {replica_env['READ_REPLICA_URLS']}")
    seed = prepare_topology(env, cfg)
    token = seed["history_tokens"]["20"]
    # The same shop twice: one reading from the replica, one from the read primary.
    replica_base = start_gunicorn(procs, free_port(), replica_env, GUNICORN_WORKERS,
                                  GUNICORN_THREADS)
    primary_base = start_gunicorn(procs, free_port(), env, GUNICORN_WORKERS,
                                  GUNICORN_THREADS, name="gunicorn-primary")
    start_celery(procs, env, CELERY_CONCURRENCY)
    wait_until(lambda: read_from(replica_base, token) == "replica1", timeout=30,
               interval=0.5, what="the replica to serve the history")
    if read_from(primary_base, token) != "primary":
        raise RuntimeError("the shop without READ_REPLICA_URLS did not read the primary")

    say("query_history_rps_replica: the history from the replica vs from the read primary")
    script = loadgen.write_script(tmp, "history_split", "GET", "/api/queries/orders/",
                                  [token])
    with ServedFrom(replica_base, token) as on_replica, \
            ServedFrom(primary_base, token) as on_primary, \
            ReplicaLag(cluster.primary.port) as query_lag:
        pair = wrk_pair(replica_base, cfg, script, script, "query_history_rps_replica",
                        baseline_base=primary_base)
    pair["served_from"] = dict(on_replica.counts)
    pair["baseline_served_from"] = dict(on_primary.counts)
    pair["replica_lag"] = query_lag.summary()
    say(f"  X-Read-From sampled: replica's shop {pair['served_from']}, "
        f"primary's shop {pair['baseline_served_from']}")
    if set(pair["served_from"]) != {"replica1"}:
        say("  WARNING: the replica's shop did not serve every sample from the replica")
    procs.stop("gunicorn-primary")

    say("read_isolation_p99 / command_during_rebuild: split topology (replica serving)")
    split = isolation(procs, env, replica_base, seed, cfg, tmp, "split",
                      lag_port=cluster.primary.port)
    stop_servers(procs, "gunicorn")

    say("the same on a single database (READ_DATABASE_URL unset)")
    single_env = django_env(recreate_database(SINGLE_DB), start_redis(procs, free_port()))
    single_seed = prepare_topology(single_env, cfg)
    base = start_gunicorn(procs, free_port(), single_env, GUNICORN_WORKERS, GUNICORN_THREADS)
    start_celery(procs, single_env, CELERY_CONCURRENCY)
    single = isolation(procs, single_env, base, single_seed, cfg, tmp, "single")
    stop_servers(procs, "gunicorn")
    return {
        "topology": {"write": write_url, "read": env["READ_DATABASE_URL"],
                     "replicas": replica_env["READ_REPLICA_URLS"],
                     "log_events": cfg["split_log_events"]},
        "query_history_rps_replica": pair,
        "split": split,
        "single": single,
        "read_isolation_p99": {"split": split["history_p99_ratio"],
                               "single_database": single["history_p99_ratio"]},
        "command_during_rebuild": {"split": split["orders_ratio"],
                                   "single_database": single["orders_ratio"]},
    }


def head_of(env: dict[str, str]) -> int:
    return int(psql("SELECT coalesce(max(notification_id), 0) FROM shop_events",
                    env["DATABASE_URL"].rsplit("/", 1)[1]))


# --- results ---------------------------------------------------------------------


def metric(value: float, unit: str, baseline: float) -> dict:
    return {"value": round(value, 3), "unit": unit, "baseline": round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


def build_metrics(http: dict | None, fresh: dict | None, log: dict | None,
                  rebuild_fresh: dict | None, search: dict | None = None,
                  split: dict | None = None) -> dict:
    """The metrics of the phases that ran (``None``: a phase left out by ``--only``)."""
    metrics = {}
    if http:
        metrics.update(http_metrics(http))
    if log:
        metrics.update(log_metrics(log))
    if rebuild_fresh:
        during, before = rebuild_fresh["during"], rebuild_fresh["baseline"]
        metrics["rebuild_freshness_p99_ms"] = {
            **metric(median([r["p99_ms"] for r in during]), "ms",
                     median([r["p99_ms"] for r in before])),
            "behind_503": sum(r["behind_503"] for r in during),
            # The same count without a rebuild: a saturated machine's own 503s.
            "baseline_behind_503": sum(r["behind_503"] for r in before),
        }
    if fresh:
        rounds = fresh["rounds"]
        metrics["freshness_p50_ms"] = metric(
            median([r["p50_ms"] for r in rounds]), "ms",
            median([r["plain_p50_ms"] for r in rounds]))
        metrics["freshness_p99_ms"] = metric(
            median([r["p99_ms"] for r in rounds]), "ms",
            median([r["plain_p99_ms"] for r in rounds]))
    if search:
        metrics["search_rps"] = metric(search["search_rps"]["value"], "req/s",
                                       search["search_rps"]["baseline"])
        metrics["search_p99_ms"] = metric(search["p99_large_ms"], "ms", search["p99_small_ms"])
    if split:
        replica, during = split["query_history_rps_replica"], split["split"]
        metrics["query_history_rps_replica"] = metric(replica["value"], "req/s",
                                                      replica["baseline"])
        # The single-database figures are beside them in details.split.
        metrics["read_isolation_p99"] = metric(during["history_p99_ms"], "ms",
                                               during["baseline_history_p99_ms"])
        metrics["command_during_rebuild"] = metric(during["orders_rps"], "req/s",
                                                   during["baseline_orders_rps"])
    return metrics


def http_metrics(http: dict) -> dict:
    metrics = {}
    if "query_history_rps" in http:  # not with BENCH_COMMANDS_ONLY
        metrics["query_history_rps"] = metric(
            http["query_history_rps"]["value"], "req/s", http["query_history_rps"]["baseline"])
        for n in ("5", "50"):
            entry = http[f"query_vs_write_model_{n}"]
            metrics[f"query_vs_write_model_{n}"] = metric(entry["value"], "ms",
                                                          entry["baseline"])
    metrics["command_place_order_rps"] = metric(
        http["command_place_order_rps"]["value"], "req/s",
        http["command_place_order_rps"]["baseline"])
    for name in ("idempotent_command_rps", "flash_sale_rps"):
        metrics[name] = metric(http[name]["value"], "req/s", http[name]["baseline"])
    return metrics


def log_metrics(log: dict) -> dict:
    metrics = {}
    metrics["projection_catch_up_eps"] = metric(
        median([r["applied_per_s"] for r in log["catch_up"]]), "events/s",
        median([r["decoded_per_s"] for r in log["catch_up"]]))
    metrics["rebuild_eps"] = metric(
        log["rebuild_full"]["log_events_per_s"], "events/s",
        log["decode_full"]["log_events_per_s"])
    metrics["rebuild_peak_rss_mb"] = metric(
        log["rebuild_full"]["peak_rss_mb"], "MB", log["rebuild_small"]["peak_rss_mb"])
    metrics["verify_eps"] = metric(
        log["verify_full"]["log_events_per_s"], "events/s",
        log["decode_full"]["log_events_per_s"])
    return metrics


def goal_status(name: str, m: dict) -> tuple[str, bool]:
    parts, ok = [], True
    for field, op, target in GOALS.get(name, []):
        actual = m[field]
        met = actual is not None and (actual >= target if op == ">=" else actual <= target)
        ok = ok and met
        parts.append(f"{field} {op} {target:g}")
    return ", ".join(parts), ok


BASELINES = {
    "query_history_rps": "5 rows of one table (DRF)",
    "query_vs_write_model_5": "read model, same 5 orders",
    "query_vs_write_model_50": "read model, same 50 orders",
    "command_place_order_rps": "insert one row (DRF)",
    "idempotent_command_rps": "same orders without a key",
    "flash_sale_rps": "same load over 200 products",
    "projection_catch_up_eps": "read+decode same events",
    "rebuild_eps": "read+decode whole log",
    "rebuild_peak_rss_mb": "peak RSS at 1/10 log",
    "verify_eps": "read+decode whole log",
    "rebuild_freshness_p99_ms": "same p99, no rebuild",
    "freshness_p50_ms": "plain query p50",
    "freshness_p99_ms": "plain query p99",
    "search_rps": "plain product list, same catalog",
    "search_p99_ms": "same searches at 1/10 the catalog",
    "query_history_rps_replica": "same history from the read primary",
    "read_isolation_p99": "same p99 without a rebuild (split)",
    "command_during_rebuild": "same orders without a rebuild (split)",
}


def table(metrics: dict) -> str:
    rows = [("metric", "value", "unit", "baseline", "(baseline is)", "ratio", "goal", "")]
    for name, m in metrics.items():
        goal, ok = goal_status(name, m)
        rows.append((name, f"{m['value']:,.1f}", m["unit"], f"{m['baseline']:,.1f}",
                     BASELINES[name], f"{m['ratio']:.3f}", goal, "met" if ok else "MISSED"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, under 3 minutes")
    parser.add_argument("--keep", action="store_true",
                        help="keep the bench databases and logs for inspection")
    parser.add_argument("--only", type=phase_list, default=PHASES,
                        help=f"comma-separated phases to run, of {', '.join(PHASES)}")
    args = parser.parse_args()
    only = args.only
    preflight(only)
    mode = "quick" if args.quick else "full"
    cfg = PROFILES[mode]
    started_at, t0 = datetime.now(UTC), time.monotonic()
    tmp = loadgen.scratch_dir()
    procs = Processes(tmp)
    machine = machine_info()
    say(f"{mode} run of {', '.join(only)}; scratch dir {tmp}; {machine['cpu']}, "
        f"{machine['cores']} cores")
    http = fresh = fresh_half = log = rebuild_fresh = search = split = None
    databases = []
    cluster: Cluster | None = None
    try:
        if "http" in only or "freshness" in only:
            databases.append(HTTP_DB)
            http_url = recreate_database(HTTP_DB)
            broker = start_redis(procs, free_port())
            env = django_env(http_url, broker)
            say("migrating the bench database")
            migrate(env)
            say("seeding users, products and order histories")
            seed = job("seed", env=env)
            base = start_gunicorn(procs, free_port(), env, GUNICORN_WORKERS, GUNICORN_THREADS)
            start_celery(procs, env, CELERY_CONCURRENCY)
            if "http" in only:
                http = phase_http(base, seed, cfg, tmp)
            if "freshness" in only:
                job("sync", env=env)  # let the workers start the freshness run with no backlog
                fresh = phase_freshness(base, seed, cfg, tmp, cfg["rate"],
                                        cfg["freshness_rounds"], "target")
                # The same at half the measured command capacity: the propagation delay
                # itself, without the queueing of a saturated machine.
                capacity = http["command_place_order_rps"]["value"] if http else cfg["rate"]
                half = max(10.0, round(capacity / 2))
                job("sync", env=env)
                fresh_half = phase_freshness(base, seed, cfg, tmp, half, 1, "half_capacity")
            procs.stop("celery-beat")
            procs.stop("celery-worker")
            procs.stop("gunicorn")
            procs.stop("redis")
        if "log" in only or "rebuild_freshness" in only:
            databases.append(LOG_DB)
            log_url = recreate_database(LOG_DB)
            log_env = django_env(log_url)
            migrate(log_env)
            log = phase_log(log_env, cfg)
            if "rebuild_freshness" in only:
                # The rebuild under traffic runs as by default (--jobs 1): its window is
                # that run's.
                rebuild_fresh = phase_rebuild_freshness(
                    procs, log_url, cfg, tmp, log["rebuild_full_one_job"]["seconds"]
                )
            if "log" not in only:
                log = None
        if "search" in only:
            databases.append(SEARCH_DB)
            search = phase_search(procs, cfg, tmp)
        if "split" in only:
            databases += [SPLIT_DB, SINGLE_DB]
            say("starting a throwaway PostgreSQL (initdb) for the read database and a "
                "streaming standby of it (pg_basebackup -R)")
            cluster = Cluster(fsync=True)  # durable, as the machine's own server
            cluster.start()
            split = phase_split(procs, cluster, cfg, tmp)
    finally:
        procs.stop_all()
        if cluster is not None and args.keep:
            say(f"kept the read primary (port {cluster.primary.port}) and its standby "
                f"(port {cluster.standby.port}) in {cluster.root}: pg_ctl -D <dir> stop")
        elif cluster is not None:
            cluster.stop()
        if not args.keep:
            for name in databases:
                try:
                    drop_database(name)
                except Exception as exc:  # noqa: BLE001
                    say(f"could not drop {name}: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)

    metrics = build_metrics(http, fresh, log, rebuild_fresh, search, split)
    seconds = time.monotonic() - t0
    goals = {}
    for name, m in metrics.items():
        text, ok = goal_status(name, m)
        goals[name] = {"goal": text, "met": ok}
    result = {
        "machine": machine,
        "run": {
            "mode": mode,
            "phases": list(only),
            "started_at": started_at.isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "config": {**cfg, "connections": CONNECTIONS, "gunicorn_workers": GUNICORN_WORKERS,
                       "gunicorn_threads": GUNICORN_THREADS,
                       "celery_concurrency": CELERY_CONCURRENCY},
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "metrics": metrics,
        "goals": goals,
        "baselines": BASELINES,
        "details": {
            "http": http,
            "freshness": fresh and {"rate": fresh["rate"], "rounds": fresh["rounds"]},
            "freshness_half_capacity": fresh_half and {"rate": fresh_half["rate"],
                                                       "rounds": fresh_half["rounds"]},
            "log": log,
            "rebuild_freshness": rebuild_fresh,
            "search": search,
            "split": split,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    whole = tuple(only) == PHASES
    output = RESULTS / ("latest.json" if whole else f"only-{'-'.join(only)}.json")
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    written = [output]
    if fresh:
        plot_freshness(
            fresh["samples"], fresh["plain"], RESULTS / "freshness.png",
            f"Freshness at {cfg['rate']} commands/s ({mode} run, {len(fresh['samples'])} "
            f"commands, {machine['cores']} cores)",
            extra=(f"freshness at {fresh_half['rate']:g}/s (half capacity)",
                   fresh_half["samples"]),
        )
        written.append(RESULTS / "freshness.png")
    print()
    print(table(metrics))
    print()
    say(f"done in {seconds:.0f} s; wrote {' and '.join(str(p) for p in written)}")


def phase_list(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PHASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown phase(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PHASES)}")
    return tuple(name for name in PHASES if name in names)


if __name__ == "__main__":
    main()
