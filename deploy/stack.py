"""The whole production stack on one machine: nginx in front (deploy/nginx.conf),
gunicorn, the Celery worker and beat, run together by honcho. ``./dev stack`` runs it;
so do the tests that attack the stack (tests/security/test_slow_clients.py).

Environment (beyond the app's own, e.g. ``DATABASE_URL``, ``CELERY_BROKER_URL``,
``SECRET_KEY``):

  LISTEN          where nginx listens (default 127.0.0.1:8080)
  APP_PORT        gunicorn's port on 127.0.0.1 (default 8000), reached only by nginx
  WEB_WORKERS     gunicorn processes (default 2)
  WEB_THREADS     threads per gunicorn process (default 4)
  STACK_RUN_DIR   nginx's rendered config, pid and temp files, beat's schedule
                  (default .stack/ in the project)
  STACK_PROCESSES which to run, comma-separated (default nginx,web,worker,beat)

The app runs with NUM_PROXIES=1 (nginx is its one proxy). Ctrl-C or SIGTERM stops
every process; if one exits, honcho stops the others.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

MAIN_CONF = """\
# Rendered by deploy/stack.py; the server itself is deploy/nginx.conf.
{user}worker_processes 1;
pid {run}/nginx.pid;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    error_log stderr warn;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include {run}/shop.conf;
}}
"""


def render_nginx(run: Path, listen: str, app_port: int) -> Path:
    """deploy/nginx.conf with this machine's addresses and paths, and a main config
    around it; returns the main config's path."""
    server = (DEPLOY / "nginx.conf").read_text()
    for default, local in (
        ("listen 8080;", f"listen {listen};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
        ("alias /srv/shop/deploy/errors/;", f"alias {DEPLOY / 'errors'}/;"),
    ):
        if default not in server:
            raise SystemExit(f"deploy/nginx.conf no longer has {default!r}")
        server = server.replace(default, local)
    (run / "shop.conf").write_text(server)
    # As root, nginx's workers would run as nobody, who may not read the project.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = run / "nginx-main.conf"
    main.write_text(MAIN_CONF.format(run=run, user=user))
    return main


def main() -> int:
    env = dict(os.environ)
    env.setdefault("NUM_PROXIES", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    listen = env.get("LISTEN", "127.0.0.1:8080")
    app_port = int(env.get("APP_PORT", "8000"))
    run = Path(env.get("STACK_RUN_DIR") or ROOT / ".stack").resolve()
    run.mkdir(parents=True, exist_ok=True)
    wanted = env.get("STACK_PROCESSES", "nginx,web,worker,beat").split(",")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    python = sys.executable
    commands = {
        "nginx": [nginx, "-e", "stderr", "-c", str(render_nginx(run, listen, app_port))],
        "web": [
            python,
            "-m",
            "gunicorn",
            "shop.wsgi",
            "-c",
            str(DEPLOY / "gunicorn.conf.py"),
            "-w",
            env.get("WEB_WORKERS", "2"),
            "--threads",
            env.get("WEB_THREADS", "4"),
            "-b",
            f"127.0.0.1:{app_port}",
            "--graceful-timeout",
            "10",
        ],
        "worker": [python, "-m", "celery", "-A", "shop", "worker", "-l", "INFO", "-c", "2"],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "shop",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(run / "celerybeat-schedule"),
            "--pidfile=",
        ],
    }
    manager = Manager(Printer(sys.stdout))
    for name in wanted:
        name = name.strip()
        if name not in commands:
            raise SystemExit(f"STACK_PROCESSES: no process {name!r} (have {sorted(commands)})")
        manager.add_process(name, shlex.join(commands[name]), cwd=str(ROOT), env=env)
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
