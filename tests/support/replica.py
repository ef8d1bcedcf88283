"""A throwaway PostgreSQL primary and a real streaming standby of it.

Built from the PostgreSQL binaries already on the machine: ``initdb`` a primary on a
free port, ``pg_basebackup -R`` a standby from it (``-R`` writes its
``primary_conninfo`` and ``standby.signal``), start both. The servers run as the
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port


def pg_bin() -> Path | None:
    """The directory of the newest installed PostgreSQL's server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Server:
    data: Path
    port: int

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"


class Cluster:
    """A primary and one standby, in a temporary directory. ``fsync`` off (the tests'
    default) trades durability for speed; the bench turns it on, to compare the read
    primary with the machine's own server like for like."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="shop-replica-"))
        self.primary = Server(self.root / "primary", free_port())
        self.standby = Server(self.root / "standby", free_port())
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user="postgres")

    def _run(self, *args: str, timeout: float = 120) -> str:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr[-2000:]}")
        return result.stdout

    def _options(self, server: Server, *extra: str) -> str:
        return " ".join([f"-p {server.port}", f"-k {self.root}",
                         "-c listen_addresses=127.0.0.1",
                         f"-c fsync={'on' if self.fsync else 'off'}", *extra])

    def start(self) -> Cluster:
        self._run("initdb", "-D", str(self.primary.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        self.start_server(self.primary)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                  "-U", "postgres", "-D", str(self.standby.data), "-R", "-X", "stream")
        self.start_server(self.standby)
        return self

    def start_server(self, server: Server) -> None:
        extra = ("-c wal_level=replica", "-c max_wal_senders=4") \
            if server is self.primary else ("-c hot_standby=on",)
        self._run("pg_ctl", "-D", str(server.data), "-o", self._options(server, *extra),
                  "-l", str(self.root / f"{server.data.name}.log"), "-w", "start")

    def stop_server(self, server: Server) -> None:
        self._run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            with contextlib.suppress(RuntimeError):  # not running
                self.stop_server(server)
        shutil.rmtree(self.root, ignore_errors=True)
