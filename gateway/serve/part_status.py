"""The parts of ``xgate serve`` as its supervisor sees them, shared through a small file.

The supervisor (gateway.serve.supervisor) writes ``data_dir/metrics/parts.json`` whenever a part
starts, dies or stops flapping; the web part reads it for ``/healthz`` and ``/metrics``. A
file rather than a metric in memory: the supervisor serves no HTTP, and the web part is one
of its children. The file names the supervisor's pid; once that process is gone the file
says nothing (a part run alone, e.g. under systemd, has no supervisor of ours).
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "parts.json"


class PartState(enum.StrEnum):
    RUNNING = "running"
    # Died; waiting for its restart.
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PartStatus:
    state: PartState
    pid: int | None
    restarts: int
    quick_failures: int
    last_exit: int | None
    # time.time() of the next start, while waiting for it.
    restart_at: float | None = None
    # Died right after its start again and again; until it has run a while, whether it is
    # running at the moment or waiting for its next start.
    flapping: bool = False

    @property
    def healthy(self) -> bool:
        return self.state == PartState.RUNNING and not self.flapping

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"state": self.state.value, "flapping": self.flapping,
                                   "restarts": self.restarts}
        if self.pid is not None:
            data["pid"] = self.pid
        if self.last_exit is not None:
            data["last_exit_status"] = self.last_exit
        if self.restart_at is not None:
            data["restart_in_seconds"] = max(0.0, round(self.restart_at - time.time(), 1))
        return data


def write_status(path: Path, parts: dict[str, PartStatus]) -> None:
    """Replace the file atomically: a reader sees the old or the new state, never half."""
    data = {"supervisor_pid": os.getpid(), "updated_at": time.time(), "parts": {
        name: {"state": p.state.value, "pid": p.pid, "restarts": p.restarts,
               "quick_failures": p.quick_failures, "last_exit": p.last_exit,
               "restart_at": p.restart_at, "flapping": p.flapping}
        for name, p in parts.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(data, sort_keys=True))
    os.replace(temporary, path)


def read_status(path: Path) -> dict[str, PartStatus] | None:
    """The parts, or None without a running supervisor (no file, unreadable, or its
    supervisor has exited)."""
    try:
        data: Any = json.loads(path.read_text())
        pid = int(data["supervisor_pid"])
        parts = data["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    found = {}
    for name, part in parts.items():
        try:
            found[str(name)] = PartStatus(
                state=PartState(part["state"]), pid=part.get("pid"),
                restarts=int(part.get("restarts", 0)),
                quick_failures=int(part.get("quick_failures", 0)),
                last_exit=part.get("last_exit"), restart_at=part.get("restart_at"),
                flapping=bool(part.get("flapping", False)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
