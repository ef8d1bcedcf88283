"""A steady stream of commands over HTTP from a few threads, for fault injection.

The test injects its fault between milestones counted in responses ("after 20
answers, stop Redis; after 30 more, start it"), so the phases do not depend on
timing.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from tests.support.http import Response, request, run_load


class CommandStream:
    """Threads that send commands from ``make_command(n)`` until stopped."""

    def __init__(self, base_url: str, make_command: Callable[[int], dict], *,
                 threads: int = 3) -> None:
        self.base_url = base_url
        self.make_command = make_command
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(threads)]
        self.responses: list[Response] = []
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> CommandStream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = next(self._counter)
            command = self.make_command(n)
            resp = request(command["method"], self.base_url + command["path"],
                           command.get("body"), token=command.get("token"))
            resp.tag = command.get("tag")
            with self._lock:
                self.responses.append(resp)

    def count(self) -> int:
        with self._lock:
            return len(self.responses)

    def wait_for(self, total: int, timeout: float = 60) -> None:
        """Block until at least ``total`` responses have come back."""
        deadline = time.monotonic() + timeout
        while self.count() < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} of {total} responses arrived")
            time.sleep(0.02)

    def snapshot(self) -> list[Response]:
        with self._lock:
            return list(self.responses)


def shop_commands(*, product_ids: list[UUID], staff_token: str,
                  customer_tokens: list[str], seed: int = 1) -> Callable[[int], dict]:
    """Orders (mostly), renames and reprices on a few products."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def make(n: int) -> dict:
        with lock:
            roll, pid, qty = rng.random(), rng.choice(product_ids), rng.randint(1, 3)
        if roll < 0.6:
            return {"method": "POST", "path": "/api/commands/orders/",
                    "token": customer_tokens[n % len(customer_tokens)],
                    "body": {"lines": [{"product_id": str(pid), "quantity": qty}],
                             "shipping_address": f"{n} Stream St"},
                    "tag": ["order", n]}
        if roll < 0.8:
            return {"method": "POST", "path": f"/api/commands/products/{pid}/rename",
                    "token": staff_token, "body": {"name": f"Stream name {n}"},
                    "tag": ["product", str(pid)]}
        return {"method": "POST", "path": f"/api/commands/products/{pid}/reprice",
                "token": staff_token, "body": {"price": f"{10 + n % 90}.{n % 100:02d}"},
                "tag": ["product", str(pid)]}

    return make


def command_belongs(resp: Response, event) -> bool:
    """The event at a command's ``position`` is one that command appended."""
    if resp.tag[0] == "order":
        return getattr(event, "order_id", event.originator_id) == UUID(resp.body["order_id"])
    return (event.originator_id == UUID(resp.tag[1])
            and event.originator_version == resp.body["version"])


@dataclass
class ShopUnderLoad:
    web: object  # the running gunicorn (``.base_url``)
    make: object  # n -> the n-th command to send (tests.support.load.shop_commands)
    product_ids: list


def start_shop_under_load(services, api_users, *, prefix: str, price: str,
                          seed: int = 1) -> ShopUnderLoad:
    """Three products, gunicorn, a worker and beat (1 s sweep), and a command generator:
    the running shop that the fault tests break."""
    from catalog.services import product_register

    product_ids = [
        product_register(sku=f"{prefix}-{i}", name=f"{prefix} {i}", price=Decimal(price),
                         stock=100_000).aggregate_id
        for i in range(3)
    ]
    web = services.gunicorn()
    services.worker()
    services.beat(PROJECTION_SWEEP_SECONDS="1")
    make = shop_commands(product_ids=product_ids, staff_token=api_users["staff"].token,
                         customer_tokens=[c.token for c in api_users["customers"]], seed=seed)
    return ShopUnderLoad(web=web, make=make, product_ids=product_ids)


def order_rush(base_url: str, customers: list, product_id: UUID, *, processes: int,
               per_process: int, threads: int) -> tuple[list[Response], Counter]:
    """Orders of one unit of ``product_id`` each, sent at the same instant from
    ``processes`` OS processes of ``threads`` threads (``per_process`` orders each),
    spread over ``customers``. Returns every response and the count of its
    ``(status, code)`` outcomes."""
    batches = [
        [
            {
                "method": "POST",
                "path": "/api/commands/orders/",
                "token": customers[(p * per_process + i) % len(customers)].token,
                "body": {"lines": [{"product_id": str(product_id), "quantity": 1}],
                         "shipping_address": f"{p}-{i} Main St"},
                "tag": f"{p}-{i}",
            }
            for i in range(per_process)
        ]
        for p in range(processes)
    ]
    responses = run_load(base_url, batches, threads=threads)
    outcomes = Counter(
        (r.status, r.body.get("code") if isinstance(r.body, dict) else None)
        for r in responses
    )
    assert len(responses) == processes * per_process
    return responses, outcomes
