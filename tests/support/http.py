"""A tiny JSON-over-HTTP client (stdlib only): one-off ``request``s, a per-server
``Client`` on them, a keep-alive ``Connection`` (the bench's latency clients use it
too), and a multi-process load runner.

``run_load`` spreads requests over several OS processes (each running
``python -m tests.support.http`` with many threads) that all start at the same
instant, so the server sees real concurrency from independent clients.
"""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.support.processes import ROOT


@dataclass
class Response:
    status: int  # 0: no HTTP answer (connection refused or reset, timeout)
    body: Any = None
    error: str = ""
    tag: Any = None
    started: float = 0.0
    finished: float = 0.0
    extra: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)  # names in lower case

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: Any,
              token: str | None) -> Response:
    """Send one request on ``conn`` and read the answer (the JSON body decoded)."""
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {token}"
    started = time.time()
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    response_headers = {name.lower(): value for name, value in resp.getheaders()}
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode(errors="replace")[:500]
    return Response(resp.status, data, started=started, finished=time.time(),
                    headers=response_headers)


def _path(parts: Any) -> str:
    return parts.path + (f"?{parts.query}" if parts.query else "")


def request(method: str, url: str, body: Any = None, *, token: str | None = None,
            timeout: float = 30.0) -> Response:
    """One request on a connection of its own; no answer is ``status`` 0."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.time()
    try:
        return _exchange(conn, method, _path(parts), body, token)
    except (OSError, http.client.HTTPException) as exc:
        return Response(0, error=repr(exc), started=started, finished=time.time())
    finally:
        conn.close()


def after_idle(base_url: str, idle: float, path: str = "/api/health/") -> list[Response]:
    """Two GETs on one kept-alive connection, ``idle`` seconds apart, never reconnecting:
    the second has ``status`` 0 if the server closed the connection in between."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    answers = []
    try:
        for pause in (0.0, idle):
            time.sleep(pause)
            try:
                answers.append(_exchange(conn, "GET", path, None, None))
            except (OSError, http.client.HTTPException) as exc:
                answers.append(Response(0, error=repr(exc)))
            if conn.sock is None:  # the server said Connection: close
                break
    finally:
        conn.close()
    return answers


class Connection:
    """Requests on one keep-alive HTTP/1.1 connection (reconnecting once if the server
    closed it), as a client measuring latency would hold one. No answer raises."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None,
                token: str | None = None) -> Response:
        for attempt in (1, 2):
            try:
                return _exchange(self.conn, method, path, body, token or self.token)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Client:
    """``request`` against one server, optionally authenticated with an API token.

    Unlike ``request``, a request that gets no HTTP answer raises ``ConnectionError``.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 40.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Response:
        resp = request(method, self.base_url + path, body, token=self.token,
                       timeout=self.timeout)
        if resp.status == 0:
            raise ConnectionError(f"{method} {path}: no answer: {resp.error}")
        return resp

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


def _run_spec(spec: dict) -> list[dict]:
    """Run ``spec["requests"]`` on ``spec["threads"]`` threads from ``spec["start_at"]``."""
    todo: queue.Queue = queue.Queue()
    for index, item in enumerate(spec["requests"]):
        todo.put((index, item))
    results: list[dict | None] = [None] * len(spec["requests"])

    def work() -> None:
        while True:
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            resp = request(item["method"], spec["base"] + item["path"], item.get("body"),
                           token=item.get("token"), timeout=spec.get("timeout", 60))
            resp.tag = item.get("tag")
            results[index] = asdict(resp)

    delay = spec.get("start_at", 0) - time.time()
    if delay > 0:
        time.sleep(delay)
    threads = [threading.Thread(target=work) for _ in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def run_load(base: str, requests_per_process: list[list[dict]], *, threads: int,
             timeout: float = 120) -> list[Response]:
    """Send each list of requests from its own OS process with ``threads`` threads.

    A request is ``{"method", "path", "body"?, "token"?, "tag"?}``; every response
    comes back with its ``tag``. All processes start sending at the same moment.
    """
    start_at = time.time() + 1.5  # after every interpreter has started
    procs = []
    for reqs in requests_per_process:
        spec = {"base": base, "threads": threads, "start_at": start_at, "requests": reqs}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.http"], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append((proc, json.dumps(spec)))
    # Feed and drain every process at once: each waits for its spec on stdin.
    with ThreadPoolExecutor(len(procs)) as pool:
        outputs = list(pool.map(lambda p: p[0].communicate(p[1], timeout=timeout), procs))
    responses: list[Response] = []
    for (proc, _), (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"load process failed:\n{err[-3000:]}"
        responses.extend(Response(**item) for item in json.loads(out))
    return responses


if __name__ == "__main__":
    json.dump(_run_spec(json.load(sys.stdin)), sys.stdout)
