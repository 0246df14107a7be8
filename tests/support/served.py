"""The whole of ``xgate serve`` as an operator starts it, for tests that need its real process
tree: an installation made by ``xgate init --demo`` (SQLite), every listener on a port of the
test worker's own slice, output kept in a log whose tail a failing test shows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import XGATE, clean_env, init_installation
from tests.support.ports import free_port
from tests.support.sockets import greets
from tests.support.waiting import wait_until


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    inbound: int
    var: Path  # the installation's data directory (the database, metrics/parts.json)
    log: Path

    @property
    def db(self) -> Path:
        return self.var / "xgate.db"

    def rows(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(query, params).fetchall()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def pid(self, part: str) -> int:
        """The process id of one part ("smtp", "worker-1", ...), from the supervisor."""
        parts = json.loads((self.var / "metrics" / "parts.json").read_text())["parts"]
        return int(parts[part]["pid"])


@contextmanager
def running_serve(base: Path, env: Mapping[str, str]) -> Iterator[Served]:
    """``xgate serve`` of a fresh demo installation under ``base``, with ``env`` on top of
    the ports; stopped (and waited for) at the end."""
    config = init_installation(base / "inst", "--demo")
    inbound = free_port()
    full_env = clean_env({
        "XGATE_SMTP__INBOUND__PORT": str(inbound),
        "XGATE_SMTP__SUBMISSION__PORT": str(free_port()),
        "XGATE_WEB__PORT": str(free_port()),
        "XGATE_PORTAL__PORT": str(free_port()),
        "XGATE_DEMO__CATCHER__PORT": str(free_port()),
        **env,
    })
    log = base / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(XGATE), "-c", str(config), "serve"], env=full_env,
                                   stdout=out, stderr=subprocess.STDOUT)
    served = Served(process, inbound, config.parent, log)
    try:
        wait_until(lambda: greets(inbound) or process.poll() is not None, timeout=60,
                   what="xgate serve's SMTP listener", detail=served.log_tail)
        assert process.poll() is None, served.log_tail()
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
