"""Private services for tests: a redis-server, gunicorn, a Celery worker and beat.

Every process here is started by the tests that use it (the reliability and e2e
suites), on a spare port, in its own process group, so a test can kill it (``kill -9``
of the whole group) without touching the machine's shared PostgreSQL or Redis. Output
goes to log files whose tails are quoted when a process does not come up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.05,
               what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:  # noqa: BLE001 - a service still starting refuses connections
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def database_url(db: dict) -> str:
    """A ``DATABASE_URL`` for a Django ``DATABASES`` entry (the test database)."""
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def read_database_url() -> str:
    """The test run's read database (its ``read`` alias), as a URL."""
    from django.db import connections

    return database_url(connections["read"].settings_dict)


class Process:
    """A subprocess in its own session (process group), logging to a file."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str] | None,
                 log_dir: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Process:
        self.starts += 1
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child
        log.write(f"\n===== start #{self.starts}: {' '.join(self.cmd)}\n")
        log.flush()
        self.popen = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker's children too)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            self.popen.wait(timeout=10)
            self._reap_group()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.kill_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill_group(signal.SIGKILL)

    def _reap_group(self) -> None:
        # Children (prefork pool, gunicorn workers) may outlive the leader briefly.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, *, timeout: float, after: int = 0) -> None:
        def seen() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            return text in self.log_path.read_text(errors="replace")[after:]

        try:
            wait_until(seen, timeout=timeout, interval=0.1, what=f"{self.name}: {text!r}")
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


class RedisServer(Process):
    """A private, non-persistent redis-server on a spare port; restartable on that port."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            "redis",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            env=None, log_dir=log_dir,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (again, on the same port) unless it is running already."""
        if self.running():
            return self
        super().start()
        try:
            wait_until(self._pong, timeout=10, what="redis-server to answer PING")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        wait_until(lambda: not port_open(self.port), timeout=10, what="redis port to close")


class Services:
    """Starts app processes with one environment and stops them all at teardown."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: list[Process] = []

    def add(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def gunicorn(self, *, workers: int = 2, threads: int = 4, **env: str) -> Gunicorn:
        proc = Gunicorn(self.log_dir, {**self.env, **env}, workers=workers, threads=threads)
        self.add(proc)
        return proc.start()

    def worker(self, *, concurrency: int = 2, name: str = "worker", **env: str) -> Process:
        proc = Process(
            name,
            [sys.executable, "-m", "celery", "-A", "shop", "worker", "-l", "INFO",
             "-c", str(concurrency), "--pool", "prefork", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h"],
            env={**self.env, **env}, log_dir=self.log_dir,
        )
        self.add(proc)
        return start_worker(proc)

    def beat(self, **env: str) -> Process:
        schedule = self.log_dir / "celerybeat-schedule"
        proc = Process(
            "beat",
            [sys.executable, "-m", "celery", "-A", "shop", "beat", "-l", "INFO",
             "-s", str(schedule), "--pidfile="],
            env={**self.env, **env}, log_dir=self.log_dir,
        )
        self.add(proc)
        proc.start()
        proc.wait_for_log("beat: Starting", timeout=30)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def logs(self, chars: int = 4000) -> str:
        """The tail of every process's log, for an assertion message."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(chars)}" for p in self.processes)


def start_worker(proc: Process, timeout: float = 45) -> Process:
    """(Re)start a Celery worker and wait until it consumes from the broker."""
    offset = proc.log_size()
    proc.start()
    proc.wait_for_log("ready.", timeout=timeout, after=offset)
    return proc


class Gunicorn(Process):
    def __init__(self, log_dir: Path, env: dict[str, str], *, workers: int, threads: int):
        self.port = free_port()
        super().__init__(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "shop.wsgi", "-c", str(GUNICORN_CONF),
             "-w", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "3", "--log-level", "warning"],
            env=env, log_dir=log_dir,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gunicorn:
        super().start()
        from tests.support.http import request

        def answers() -> bool:
            if not self.running():
                raise RuntimeError("gunicorn exited")
            # 301: the server is up and sends plain HTTP to HTTPS (ALLOW_HTTP off).
            return request("GET", f"{self.base_url}/api/schema/", timeout=5).status in (200, 301)

        try:
            wait_until(answers, timeout=45, interval=0.2, what="gunicorn to serve")
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n--- gunicorn log ---\n{self.log_tail()}") from None
        return self


def app_env(*, database: dict, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app process pointed at the test databases (``database``:
    the write side's; the read side's is the test run's ``read`` alias, unless
    ``READ_DATABASE_URL`` is given) and a broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(database),
        READ_DATABASE_URL=read_database_url(),
        SECRET_KEY="reliability-tests-secret-key",
        DEBUG="0",
        CELERY_BROKER_URL=broker_url,
        LOG_LEVEL="INFO",
        ALLOW_HTTP="1",
        THROTTLE_RATES="user=off",  # load tests send thousands of requests from one IP
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env
