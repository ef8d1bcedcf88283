"""HTTP load with wrk (a separate, native process): Lua scripts generated per run."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

WRK_MISSING = (
    "wrk is not installed. Install it with:\n"
    "    sudo apt-get update && sudo apt-get install -y wrk"
)

_LUA = r"""
local method = "%(method)s"
local path = "%(path)s"
local paths = {%(paths)s}
local tokens = {%(tokens)s}
local bodies = {%(bodies)s}
local idempotency_keys = %(idempotency_keys)s
local run_id = ""
local counter = 0
local thread_id = 0
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  counter = thread_id * 7919
  -- Rounds rerun one script: keys carry the run's start time, so no run replays another's.
  run_id = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local headers = {}
  if #tokens > 0 then
    headers["Authorization"] = "Token " .. tokens[(counter %% #tokens) + 1]
  end
  headers["Accept"] = "application/json"
  local body = nil
  if #bodies > 0 then
    headers["Content-Type"] = "application/json"
    body = bodies[(counter %% #bodies) + 1]
  end
  if idempotency_keys then
    headers["Idempotency-Key"] = "bench-" .. run_id .. "-" .. thread_id .. "-" .. counter
  end
  local target = path
  if #paths > 0 then
    target = paths[(counter %% #paths) + 1]
  end
  return wrk.format(method, target, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %%d, \"duration_us\": %%d, \"status_errors\": %%d, " ..
    "\"connect_errors\": %%d, \"read_errors\": %%d, \"write_errors\": %%d, " ..
    "\"timeouts\": %%d, \"latency_p50_us\": %%d, \"latency_p99_us\": %%d, " ..
    "\"latency_mean_us\": %%f}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def write_script(directory: Path, name: str, method: str, path: str, tokens: list[str],
                 bodies: list[dict] | None = None, *, idempotency_keys: bool = False,
                 paths: list[str] | None = None) -> Path:
    """A wrk script; ``idempotency_keys``: a fresh Idempotency-Key on every request;
    ``paths``: requests cycle through these instead of ``path``."""
    script = directory / f"{name}.lua"
    script.write_text(
        _LUA
        % {
            "method": method,
            "path": path,
            "tokens": ", ".join(lua_string(t) for t in tokens),
            "bodies": ", ".join(lua_string(json.dumps(b)) for b in bodies or []),
            "idempotency_keys": "true" if idempotency_keys else "false",
            "paths": ", ".join(lua_string(p) for p in paths or []),
        }
    )
    return script


def order_bodies(product_ids: list[str], count: int = 500, seed: int = 7) -> list[dict]:
    """Order bodies of 2 distinct products each, cycled by the script."""
    rng = random.Random(seed)
    return [
        {
            "lines": [{"product_id": p, "quantity": rng.randint(1, 3)}
                      for p in rng.sample(product_ids, 2)],
            "shipping_address": "1 Load Street, Benchville",
        }
        for _ in range(count)
    ]


def one_unit_bodies(product_ids: list[str]) -> list[dict]:
    """One-line orders of 1 unit, one body per product (cycled by the script)."""
    return [{"lines": [{"product_id": p, "quantity": 1}],
             "shipping_address": "1 Load Street, Benchville"} for p in product_ids]


def run_wrk(base_url: str, script: Path, *, connections: int, duration: float,
            threads: int = 2) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit(WRK_MISSING)
    proc = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
         "--timeout", "10s", "-s", str(script), base_url],
        capture_output=True, text=True, timeout=duration + 60,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON "):])
            seconds = result["duration_us"] / 1e6
            errors = sum(result[k] for k in (
                "status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
            result["rps"] = (result["requests"] - errors) / seconds if seconds else 0.0
            result["errors"] = errors
            return result
    raise RuntimeError(f"wrk gave no result:\n{proc.stdout}\n{proc.stderr}")


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="shop-bench-"))
