"""The supervisor's policy with throwaway child processes: restart, give up, kill."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from gateway.supervisor import MAX_QUICK_FAILURES, Child, Supervisor


def fast_clock(factor: float = 20.0) -> float:
    """Time passing ``factor`` times faster, so backoffs of seconds take a fraction."""
    return time.monotonic() * factor


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_part_failing_right_after_start_makes_the_supervisor_give_up() -> None:
    child = Child("broken", python("import sys; sys.exit(3)"))
    supervisor = Supervisor([child], os.environ, clock=fast_clock)
    started = time.monotonic()
    assert supervisor.run() == 1
    assert child.quick_failures == MAX_QUICK_FAILURES
    assert child.restarts == MAX_QUICK_FAILURES - 1
    assert time.monotonic() - started < 20


def test_a_part_that_worked_for_a_while_is_restarted_without_limit() -> None:
    # 0.6 s real are 12 s on the fast clock: longer than a "quick" failure.
    child = Child("flaky", python("import time; time.sleep(0.6)"))
    supervisor = Supervisor([child], os.environ, clock=fast_clock)
    runner = threading.Thread(target=lambda: setattr(supervisor, "status", supervisor.run()))
    runner.start()
    deadline = time.monotonic() + 30
    while child.restarts < MAX_QUICK_FAILURES + 1:
        assert time.monotonic() < deadline, "not restarted often enough"
        time.sleep(0.05)
    supervisor.stop.set()
    runner.join(20)
    assert getattr(supervisor, "status", None) == 0
    assert child.quick_failures == 1


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    stubborn = python("import pathlib, signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      f"pathlib.Path({str(ready)!r}).touch()\n"
                      "time.sleep(60)")
    child = Child("stubborn", stubborn)
    supervisor = Supervisor([child], os.environ, grace_seconds=1)
    runner = threading.Thread(target=lambda: setattr(supervisor, "status", supervisor.run()))
    runner.start()
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    started = time.monotonic()
    supervisor.stop.set()
    runner.join(20)
    assert getattr(supervisor, "status", None) == 0
    assert time.monotonic() - started < 10
    assert child.process is not None and child.process.returncode == -9
