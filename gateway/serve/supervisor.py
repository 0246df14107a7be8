"""The process tree of ``xgate serve``: start each part as a child, restart it if it dies.

A mail gateway must keep accepting mail, so the supervisor never gives up on a part and
never stops the others because of it. A part that dies is restarted after a backoff that
doubles with every failure in a row (1 s, 2 s, 4 s ... at most 30 s), for as long as it
takes; a part that ran at least ten seconds before it died starts again from 1 s. One that
keeps dying right after its start (five times in a row) is *flapping*: that is logged at
ERROR once, shown on ``/healthz`` and in the metrics (``xgate_part_flapping``), and cleared
when the part has run ten seconds. Every state change is written to a status file that the
web part reads (gateway.serve.part_status).

On SIGTERM/SIGINT every child gets SIGTERM, and SIGKILL if it has not exited after the grace
period.
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
from pathlib import Path

from gateway.serve.part_status import PartState, PartStatus, write_status

log = logging.getLogger(__name__)

PARENT_PID_ENV = "XGATE_SUPERVISOR_PID"
MAX_BACKOFF_SECONDS = 30.0
# A child that ran at least this long before dying counts as having worked: its backoff
# starts again from the beginning.
QUICK_FAILURE_SECONDS = 10.0
# This many quick failures in a row and the part is flapping (the alert).
FLAPPING_AFTER = 5


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    # Descriptors the child inherits (listening sockets bound by ``xgate serve``).
    pass_fds: Sequence[int] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    flapping: bool = False

    @property
    def state(self) -> PartState:
        if self.process is not None:
            return PartState.RUNNING
        return PartState.RESTARTING if self.restart_at is not None else PartState.STOPPED


def backoff(quick_failures: int) -> float:
    """Seconds before the next start after ``quick_failures`` quick failures in a row."""
    return min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, quick_failures - 1))


class Supervisor:
    def __init__(self, children: Sequence[Child], env: Mapping[str, str], *,
                 grace_seconds: float = 10.0, status_file: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.env = dict(env)
        self.env[PARENT_PID_ENV] = str(os.getpid())
        self.grace_seconds = grace_seconds
        self.status_file = status_file
        self.clock = clock
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> int:
        """Supervise until told to stop; then stop every part. Returns 0."""
        for child in self.children:
            self._start(child)
        self._publish()
        while not self.stop.is_set():
            if self._check_children():
                self._publish()
            self.stop.wait(0.2)
        self._stop_all()
        for child in self.children:
            child.restart_at = None
        self._publish()
        return 0

    def _start(self, child: Child) -> None:
        try:
            # A session of its own: a Ctrl-C on the terminal reaches only the supervisor,
            # which then stops the children in order instead of all of them racing.
            child.process = subprocess.Popen(list(child.argv), env=self.env,
                                             start_new_session=True,
                                             pass_fds=tuple(child.pass_fds))
        except OSError as exc:
            # Counted like a part that died at once; the others go on.
            log.error("cannot start %s: %s", child.name, exc, extra={"part": child.name})
            child.process = None
            child.started_at = self.clock()
            self._schedule_restart(child, -1, self.clock())
            return
        child.started_at = self.clock()
        child.restart_at = None
        log.info("started %s (pid %d)", child.name, child.process.pid,
                 extra={"part": child.name, "pid": child.process.pid})

    def _check_children(self) -> bool:
        """One look at every child; True if anything changed."""
        now = self.clock()
        changed = False
        for child in self.children:
            if child.process is not None:
                code = child.process.poll()
                if code is None:
                    if child.flapping and now - child.started_at >= QUICK_FAILURE_SECONDS:
                        child.flapping = False
                        child.quick_failures = 0
                        log.info("%s has been running for %.0f s again; no longer flapping",
                                 child.name, now - child.started_at,
                                 extra={"part": child.name})
                        changed = True
                    continue
                child.process = None
                self._schedule_restart(child, code, now)
                changed = True
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
                changed = True
        return changed

    def _schedule_restart(self, child: Child, code: int, now: float) -> None:
        ran = now - child.started_at
        child.last_exit = code
        child.quick_failures = child.quick_failures + 1 if ran < QUICK_FAILURE_SECONDS else 1
        delay = backoff(child.quick_failures)
        child.restart_at = now + delay
        extra = {"part": child.name, "exit_status": code, "restart_in_seconds": delay}
        if child.quick_failures >= FLAPPING_AFTER:
            if not child.flapping:
                child.flapping = True
                log.error("%s is flapping: it failed %d times in a row within %.0f s of "
                          "starting (last exit status %d); restarting it every %.0f s at "
                          "most, the other parts keep running", child.name,
                          child.quick_failures, QUICK_FAILURE_SECONDS, code, delay,
                          extra=extra)
                return
        log.warning("%s exited with status %d after %.1f s; restarting in %.0f s",
                    child.name, code, ran, delay, extra=extra)

    def _publish(self) -> None:
        if self.status_file is None:
            return
        wall, mono = time.time(), self.clock()
        parts = {}
        for child in self.children:
            restart_at = (None if child.restart_at is None
                          else wall + max(0.0, child.restart_at - mono))
            parts[child.name] = PartStatus(
                state=child.state, pid=child.process.pid if child.process else None,
                restarts=child.restarts, quick_failures=child.quick_failures,
                last_exit=child.last_exit, restart_at=restart_at, flapping=child.flapping)
        try:
            write_status(self.status_file, parts)
        except OSError as exc:
            log.warning("cannot write the part status file %s: %s", self.status_file, exc)

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
        for child in self.children:
            child.process = None


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
