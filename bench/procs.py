"""Starting and stopping what the benchmark needs: its databases, its own Redis,
gunicorn and Celery. The processes run under the tests' supervisor
(``tests/support/processes.py``); every one is stopped by its own process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.http import request
from tests.support.processes import GUNICORN_CONF, Process, RedisServer, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def psql(sql: str, dbname: str = "postgres", port: int = PG_PORT) -> str:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=port, user=PG_USER, dbname=dbname, autocommit=True
    ) as conn:
        cur = conn.execute(sql)
        return str(cur.fetchone()[0]) if cur.description else ""


def recreate_database(name: str) -> str:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def in_process_shop(database: str, *, keep: bool = False, **env: str) -> Iterator[None]:
    """The shop set up in this process (``bench.settings``, Django's test client's host)
    on a fresh, migrated database ``database``, for the in-process profiles; ``env``
    adds settings. At the end its connections are closed and the database dropped
    (unless ``keep``)."""
    os.environ.update(DATABASE_URL=recreate_database(database),
                      DJANGO_SETTINGS_MODULE="bench.settings", SECRET_KEY="bench-not-secret",
                      DEBUG="0", LOG_LEVEL="WARNING", ALLOWED_HOSTS="testserver",
                      ALLOW_HTTP="1", THROTTLE_RATES="user=off", **env)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            drop_database(database)


def django_env(database_url: str, broker_url: str = "", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("DEBUG", "CELERY_BROKER_URL", "DATABASE_URL", "READ_DATABASE_URL",
                "READ_REPLICA_URLS"):
        env.pop(key, None)
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="bench-not-secret",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        ALLOW_HTTP="1",  # wrk and the clients speak plain HTTP
        THROTTLE_RATES="user=off",  # a few users and one IP make all the load
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="bench.settings",
    )
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def run_json(args: list[str], env: dict[str, str], timeout: float | None = None) -> dict:
    """Run a job process and parse the JSON object on its last stdout line."""
    proc = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def job(name: str, *args: str, env: dict[str, str], timeout: float | None = None) -> dict:
    return run_json([PYTHON, str(ROOT / "bench" / "jobs.py"), name, *args], env, timeout)


class Processes:
    """The bench's long-running processes by name, stopped in reverse order. Each is a
    ``tests.support.processes.Process`` (its own session, a log file, SIGTERM then
    SIGKILL of its group): the tests and the bench share one supervisor."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Process] = []

    def add(self, proc: Process) -> Process:
        self.procs.append(proc)
        return proc

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = self.add(Process(name, args, env=env, log_dir=self.log_dir)).start()
        assert proc.popen is not None
        return proc.popen

    def stop(self, name: str, timeout: float = 15.0) -> None:
        for proc in [p for p in self.procs if p.name == name]:
            proc.stop(timeout)
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(15.0)
        self.procs.clear()

    def log_tail(self, name: str, chars: int = 2000) -> str:
        return next((p.log_tail(chars) for p in self.procs if p.name == name), "")


def start_redis(procs: Processes, port: int) -> str:
    return procs.add(RedisServer(procs.log_dir, port)).start().url


def start_gunicorn(procs: Processes, port: int, env: dict[str, str], workers: int,
                   threads: int, name: str = "gunicorn") -> str:
    procs.start(
        name,
        [str(VENV_BIN / "gunicorn"), "shop.wsgi:application", "-c", str(GUNICORN_CONF),
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--backlog", "2048", "--log-level", "warning"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: request("GET", base + "/api/health/", timeout=2).status == 200,
                   timeout=30, interval=0.2, what="gunicorn to become healthy")
    except TimeoutError as exc:
        raise RuntimeError(f"{exc}:\n{procs.log_tail(name)}") from None
    return base


def start_celery(procs: Processes, env: dict[str, str], concurrency: int) -> None:
    procs.start(
        "celery-worker",
        [str(VENV_BIN / "celery"), "-A", "shop", "worker", "--pool", "prefork",
         "--concurrency", str(concurrency), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env,
    )
    procs.start(
        "celery-beat",
        [str(VENV_BIN / "celery"), "-A", "shop", "beat", "--loglevel", "WARNING",
         "--schedule", str(procs.log_dir / "celerybeat-schedule")],
        env=env,
    )
