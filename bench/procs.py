"""Starting and stopping what the benchmark needs: its databases, its own Redis,
gunicorn and Celery. Every process started here is stopped by its own pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql: str, dbname: str = "postgres") -> str:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True
    ) as conn:
        cur = conn.execute(sql)
        return str(cur.fetchone()[0]) if cur.description else ""


def recreate_database(name: str) -> str:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_env(database_url: str, broker_url: str = "", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("DEBUG", "CELERY_BROKER_URL", "DATABASE_URL"):
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
    """Long-running processes started by the bench, stopped in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the proc
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> None:
        for entry in [e for e in self.procs if e[0] == name]:
            self._stop(entry[1], timeout)
            self.procs.remove(entry)

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            self._stop(proc, 15.0)
        self.procs.clear()

    @staticmethod
    def _stop(proc: subprocess.Popen, timeout: float) -> None:
        if proc.poll() is not None:
            return
        # The process leads its own session: signal its group (its workers), by pgid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def start_redis(procs: Processes, port: int) -> str:
    procs.start(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(procs.log_dir)],
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start:\n" + procs.log_tail("redis"))


def start_gunicorn(procs: Processes, port: int, env: dict[str, str], workers: int,
                   threads: int) -> str:
    procs.start(
        "gunicorn",
        [str(VENV_BIN / "gunicorn"), "shop.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
         "--backlog", "2048", "--log-level", "warning"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(
            base + "/api/health/", timeout=2
        ) as response:
            if response.status == 200:
                return base
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not become healthy:\n" + procs.log_tail("gunicorn"))


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
