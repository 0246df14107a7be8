"""Worker processes for crash tests: a configuration file, then real OS processes that can be
killed with SIGKILL at any moment.

By default the product's own entry point is spawned (``xgate -c CONFIG serve worker``), so
the crash tests exercise what runs in production. Run as a module, this file is a minimal
stand-alone runner instead:

    python -m tests.support.worker_process CONFIG.toml N_THREADS [STAGE_DELAY_SECONDS]

Its one addition is the stage delay: a pause after every pipeline stage (after the deliver
stage has committed, before the outcome is), which widens the windows between commits so
that kills at random moments land inside the pipeline rather than between messages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def dump_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for a settings file: scalars, tables, arrays of tables, lists of scalars."""
    lines: list[str] = []
    _emit_table(lines, [], data)
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string.
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _emit_table(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    nested = {k: v for k, v in table.items() if isinstance(v, Mapping) or _is_table_array(v)}
    for key, value in table.items():
        if key not in nested:
            lines.append(f"{key} = {_value(value)}")
    for key, value in nested.items():
        if isinstance(value, Mapping):
            lines.append(f"\n[{'.'.join([*path, key])}]")
            _emit_table(lines, [*path, key], value)
        else:
            for item in value:
                lines.append(f"\n[[{'.'.join([*path, key])}]]")
                _emit_table(lines, [*path, key], item)


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(config))
    return path


class WorkerProcess:
    """One ``xgate serve worker`` process; output goes to a log file per start."""

    def __init__(self, config: Path, log_dir: Path, name: str = "worker",
                 command: Sequence[str] | None = None) -> None:
        self.config = config
        self.log_dir = log_dir
        self.name = name
        self.command = list(command) if command is not None else [
            str(Path(sys.executable).with_name("xgate")), "-c", str(config), "serve", "worker"]
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file: Path | None = None

    def start(self) -> WorkerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.log_dir / f"{self.name}-{self.starts}.log"
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        return self

    # Logged by ``xgate serve worker`` (and by main() below) once its threads have started.
    READY_LINE = "worker(s) running"

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the process has its threads and signal handlers; fails if it exits first.
        Generous: a fresh interpreter importing the gateway took over 15 s on a loaded
        2-core machine; a process that fails exits and is reported at once anyway."""
        from tests.support.waiting import wait_until

        wait_until(lambda: self.READY_LINE in self.log_text() or not self.running,
                   timeout=timeout, what=f"{self.name} to start", detail=self.log_tail)
        if not self.running:
            raise AssertionError(f"{self.name} exited while starting\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no rollback in the process; the OS closes its sockets."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.log_file} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def runner_command(config: Path, threads: int, stage_delay: float = 0.0) -> list[str]:
    return [sys.executable, "-m", "tests.support.worker_process", str(config), str(threads),
            str(stage_delay)]


def main(argv: Sequence[str]) -> int:
    """The stand-alone runner: N worker threads until SIGTERM."""
    from gateway.pipeline.worker import Worker, worker_name
    from gateway.services import build_services
    from gateway.settings import load_settings

    config, threads = Path(argv[0]), int(argv[1])
    delay = float(argv[2]) if len(argv) > 2 else 0.0

    def pause_after_stage(_stage: str, _seconds: float) -> None:
        time.sleep(delay)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s")
    services = build_services(load_settings(config))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    timer = pause_after_stage if delay > 0 else None
    workers = [threading.Thread(target=Worker(services, worker_name(i), timer).run_forever,
                                args=(stop,), name=f"worker-{i}") for i in range(threads)]
    for thread in workers:
        thread.start()
    logging.getLogger(__name__).info("%d worker(s) running", threads)
    # A timed wait, so the signal handler runs promptly in the main thread.
    while not stop.wait(0.5):
        pass
    for thread in workers:
        thread.join()
    services.sessions.kw["bind"].dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
