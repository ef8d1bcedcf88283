"""End-to-end fixtures: the app over HTTP, a real Celery worker and beat, our own Redis.

The test process serves the app with pytest-django's ``live_server`` (so commands
commit to the test database and enqueue catch-ups on a real broker). A Celery worker
and beat run as subprocesses on the same test database and the same Redis. The Redis
is a private ``redis-server`` on a spare port, started and stopped here, so a test can
take the broker down without touching the machine's shared Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A private redis-server on one port; ``stop()`` and ``start()`` simulate an outage."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: port_open(self.port), STARTUP_SECONDS, f"redis on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        wait_until(lambda: not port_open(self.port), 10, f"redis on {self.port} to stop")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; the e2e tests need it (apt install redis)")
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server, settings) -> Iterator[RedisServer]:
    """Our Redis, running, and this process's command side enqueueing on it."""
    from projections import tasks
    from shop.celery import app

    redis_server.start()
    # The Celery app reads its configuration from Django's settings (namespace CELERY).
    settings.CELERY_BROKER_URL = redis_server.url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert app.conf.broker_url == redis_server.url and not app.conf.task_always_eager
    _forget_broker_connections(app)
    tasks._broker_down_until = 0.0
    yield redis_server
    _forget_broker_connections(app)
    tasks._broker_down_until = 0.0


def _forget_broker_connections(app) -> None:
    # The app caches its connection and producer pools for the broker URL of first use;
    # dropping them makes it look the pools up again (kombu keys them by URL).
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


@dataclass
class Workers:
    """The read side: a Celery worker and beat, subprocesses on the test database."""

    env: dict[str, str]
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "shop"]
        self._spawn(
            "worker",
            [*celery, "worker", "--pool=prefork", "--concurrency=2", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--hostname", f"e2e-{os.getpid()}@%h"],
        )
        self._spawn(
            "beat",
            [*celery, "beat", "--loglevel=INFO",
             "--schedule", str(self.log_dir / "celerybeat-schedule")],
        )

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        )

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process, timeout=15)
        self.processes.clear()

    def assert_alive(self) -> None:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[4:6]} exited: {self.logs()}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


@pytest.fixture
def workers(broker, event_store, transactional_db, tmp_path) -> Iterator[Workers]:
    """A worker and beat (sweep every second) on the test database and our Redis.

    Torn down before the database is flushed, so nothing writes behind the next test.
    """
    from django.db import connection

    from shop.celery import app

    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocesses share the test database: needs DATABASE_URL=postgres")
    db = connection.settings_dict
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DATABASE_URL=(
            f"postgres://{db['USER'] or 'postgres'}:{db['PASSWORD'] or ''}"
            f"@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        CELERY_BROKER_URL=broker.url,
        SECRET_KEY="e2e-test-secret-key",
        DEBUG="0",
        PROJECTION_SWEEP_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    started = Workers(env=env, log_dir=tmp_path)
    started.start()
    try:
        wait_until(
            lambda: started.assert_alive() or app.control.ping(timeout=0.5),
            STARTUP_SECONDS,
            "the Celery worker to answer a ping",
        )
        yield started
    finally:
        started.stop()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


class HttpClient:
    """A tiny JSON-over-HTTP client on the stdlib, speaking to the live server."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 40) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return self._response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return self._response(error.code, error.headers, error.read())

    @staticmethod
    def _response(status: int, headers, raw: bytes) -> Response:
        body = json.loads(raw) if raw else None
        return Response(status, {k.lower(): v for k, v in headers.items()}, body)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Response:
        return self.request("POST", path, body if body is not None else {})

    def read_after(self, path: str, position: int, timeout: float = 30.0) -> Response:
        """GET a query at least as fresh as ``position``, retrying 503 up to ``timeout``."""
        separator = "&" if "?" in path else "?"
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"{path}{separator}min_position={position}&wait=10")
            if response.status != 503 or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


@pytest.fixture
def http_as(live_server) -> Callable[[Any], HttpClient]:
    """An HTTP client for the live server, authenticated with the user's token."""
    from rest_framework.authtoken.models import Token

    def make(user=None) -> HttpClient:
        token = Token.objects.get_or_create(user=user)[0].key if user is not None else None
        return HttpClient(live_server.url, token)

    return make
