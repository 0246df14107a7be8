"""The process tree of ``xgate serve``: start each part as a child, restart it if it dies.

A part that dies is restarted after a backoff (1 s, 2 s, 4 s ... at most 30 s). One that keeps
dying right after its start (a port in use, a broken certificate) would only fill the log, so
after a few such failures in a row the supervisor stops everything and exits non-zero, which
hands the problem to systemd or the operator. On SIGTERM/SIGINT every child gets SIGTERM, and
SIGKILL if it has not exited after the grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PARENT_PID_ENV = "XGATE_SUPERVISOR_PID"
MAX_BACKOFF_SECONDS = 30.0
# A child that ran at least this long before dying counts as having worked.
QUICK_FAILURE_SECONDS = 10.0
MAX_QUICK_FAILURES = 5


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, children: Sequence[Child], env: Mapping[str, str], *,
                 grace_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.env = dict(env)
        self.env[PARENT_PID_ENV] = str(os.getpid())
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> int:
        """Supervise until told to stop; 0 after a requested stop, 1 if a part kept failing."""
        for child in self.children:
            self._start(child)
        status = 0
        while not self.stop.is_set():
            if not self._check_children():
                status = 1
                break
            self.stop.wait(0.2)
        self._stop_all()
        return status

    def _start(self, child: Child) -> None:
        # A session of its own: a Ctrl-C on the terminal reaches only the supervisor, which
        # then stops the children in order instead of all of them racing.
        child.process = subprocess.Popen(list(child.argv), env=self.env, start_new_session=True)
        child.started_at = self.clock()
        child.restart_at = None
        log.info("started %s (pid %d)", child.name, child.process.pid,
                 extra={"part": child.name, "pid": child.process.pid})

    def _check_children(self) -> bool:
        now = self.clock()
        for child in self.children:
            if child.process is not None:
                code = child.process.poll()
                if code is None:
                    continue
                if not self._schedule_restart(child, code, now):
                    return False
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
        return True

    def _schedule_restart(self, child: Child, code: int, now: float) -> bool:
        ran = now - child.started_at
        child.process = None
        child.quick_failures = child.quick_failures + 1 if ran < QUICK_FAILURE_SECONDS else 1
        if child.quick_failures >= MAX_QUICK_FAILURES:
            log.error("%s failed %d times in a row right after starting (last exit status "
                      "%d); giving up", child.name, child.quick_failures, code,
                      extra={"part": child.name})
            return False
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (child.quick_failures - 1))
        child.restart_at = now + delay
        log.warning("%s exited with status %d after %.1f s; restarting in %.0f s",
                    child.name, code, ran, delay, extra={"part": child.name})
        return True

    def _stop_all(self) -> None:
        running = [c.process for c in self.children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = self.clock() + self.grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0f s; killing it", process.pid,
                            self.grace_seconds)
                process.kill()
                process.wait()


def watch_parent(on_orphaned: Callable[[], None], interval: float = 1.0) -> None:
    """In a child of the supervisor: stop if the supervisor goes away (e.g. killed -9).

    Without this, children of a killed supervisor would keep the ports and the queue.
    """
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected:
        return

    def _watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(interval)
        log.warning("supervisor (pid %s) is gone; stopping", expected)
        on_orphaned()

    threading.Thread(target=_watch, name="watch-parent", daemon=True).start()
