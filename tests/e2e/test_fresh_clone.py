"""A newcomer's first hour, from a fresh clone, following the README (issue 24).

The repository is cloned into a temporary folder (what is committed, nothing else),
and only the README's commands run there: ``./dev --help``, ``./dev manage …`` for
every operations command, and ``./dev serve --port N``. None may print a traceback.
The clone uses this test run's virtualenv (``VENV=``, which ``./dev`` honours) instead
of installing its own: CI has just built that one from the same requirements.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.processes import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("fresh") / "shop"
    subprocess.run(["git", "clone", "--quiet", str(settings.BASE_DIR), str(where)],
                   check=True, timeout=120)
    return where


def newcomer_env(**extra: str) -> dict[str, str]:
    """A shell's environment: none of the test run's settings, database or broker."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TERM", "USER")
           if name in os.environ}
    env["VENV"] = sys.prefix  # this run's virtualenv, instead of installing .venv
    env.update(extra)
    return env


def dev(clone: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["./dev", *args], cwd=clone, env=newcomer_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def test_dev_help_is_whole(clone):
    result = dev(clone, "--help")
    assert result.returncode == 0
    for usage in ("./dev serve [--port N]", "./dev manage COMMAND", "./dev test"):
        assert usage in result.stdout
    assert result.stdout.rstrip().endswith("VENV=path uses another virtualenv.")


def test_the_readmes_operations_commands_run_from_a_fresh_clone(clone):
    readme = (clone / "README.md").read_text()
    commands = set(re.findall(r"^\./dev manage (\w+)", readme, flags=re.MULTILINE))
    assert {"projection_status", "verify_projections", "catch_up_projections",
            "rebuild_projections", "seed_demo", "forget_customer",
            "export_customer_data"} <= commands

    status = dev(clone, "manage", "projection_status")  # the first one: migrates first
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"^order_history\s+0\s+0\s", status.stdout, flags=re.MULTILINE)

    seeded = dev(clone, "manage", "seed_demo")
    assert seeded.returncode == 0, seeded.stderr
    head = int(re.search(r"up to position (\d+)", seeded.stdout).group(1))
    assert f"Projection order_history: {head} events applied" in seeded.stdout

    for command in (["projection_status", "--json"], ["catch_up_projections"],
                    ["verify_projections"], ["rebuild_projections", "sales"],
                    ["export_customer_data", "jane"], ["forget_customer", "priya"],
                    ["axes_reset"]):
        result = dev(clone, "manage", *command)
        assert result.returncode == 0, (command, result.stdout + result.stderr)
    assert "0 differing rows" in dev(clone, "manage", "verify_projections").stdout
    statuses = json.loads(dev(clone, "manage", "projection_status", "--json").stdout)
    assert {row["status"] for row in statuses} == {"ok"}, statuses

    refused = dev(clone, "manage", "forget_customer", "nobody-here")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_dev_serve_on_another_port_prints_its_urls_and_logs_each_line_once(clone):
    port = free_port()
    log = clone / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(["./dev", "serve", "--port", str(port), "--noreload"],
                                  cwd=clone, env=newcomer_env(), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if get(f"{base}/api/health/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        status, page = get(f"{base}/")
        assert status == 200 and "API docs" in page
        status, body = get(f"{base}/api/queries/nowhere")  # DEBUG is on in ./dev serve
        assert status == 404 and json.loads(body)["code"] == "not_found"
        time.sleep(0.5)  # the access lines are written after the answer
    finally:
        server.terminate()
        server.wait(timeout=30)

    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    for line in (f"The shop: {base}/", f"API docs: {base}/api/docs/",
                 f"Admin:    {base}/admin/", f"curl -s -X POST {base}/api/auth/token/"):
        assert line in output, output[-3000:]
    assert "http://8000" not in output and f"http://{port}" not in output

    # Every log line once: no handler of Django's beside the root's.
    messages = Counter(json.loads(line)["message"] for line in output.splitlines()
                       if line.startswith("{"))
    assert messages["Not Found: /api/queries/nowhere/"] == 1, messages  # routed with its "/"
    assert messages[f'"GET /api/queries/nowhere HTTP/1.1" 404 {len(body)}'] == 1, messages
    assert messages[f'"GET / HTTP/1.1" 200 {len(page.encode())}'] == 1, messages
    assert [m for m, n in messages.items() if n > 1 and "applied" not in m] == []


def test_manage_py_without_the_development_settings_says_what_to_set(clone):
    """``python manage.py`` with neither SECRET_KEY nor DEBUG: one sentence naming what
    to set (and ``./dev manage``), not a 40-line traceback (issue 24)."""
    result = subprocess.run([sys.executable, "manage.py", "projection_status"], cwd=clone,
                            env=newcomer_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "manage.py: Set SECRET_KEY (or DEBUG=1 for local development, as "
        "`./dev manage <command>` and `./dev serve` do)."]
