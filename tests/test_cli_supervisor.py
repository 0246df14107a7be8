"""The supervisor's policy with throwaway child processes: restart with backoff for ever,
flag a flapping part while the others run on, publish the state, kill on stop."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.metrics import PartsCollector
from gateway.serve.part_status import PartState, read_status
from gateway.serve.supervisor import (
    FLAPPING_AFTER,
    MAX_BACKOFF_SECONDS,
    QUICK_FAILURE_SECONDS,
    Child,
    Supervisor,
    backoff,
)

# Time passes this many times faster for the supervisor: backoffs of seconds take a fraction.
SPEED = 20.0


def fast_clock() -> float:
    return time.monotonic() * SPEED


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def supervise() -> Iterator[Callable[..., Supervisor]]:
    """Run a supervisor in a thread; stopped (and checked to return 0) after the test."""
    running: list[tuple[Supervisor, threading.Thread, list[int]]] = []

    def start(children: list[Child], **kwargs: object) -> Supervisor:
        supervisor = Supervisor(children, os.environ, clock=fast_clock, **kwargs)  # type: ignore[arg-type]
        status: list[int] = []
        thread = threading.Thread(target=lambda: status.append(supervisor.run()))
        thread.start()
        running.append((supervisor, thread, status))
        return supervisor

    yield start
    for supervisor, thread, status in running:
        supervisor.stop.set()
        thread.join(30)
        assert status == [0]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert MAX_BACKOFF_SECONDS == 30


def test_a_flapping_part_is_restarted_for_ever_and_the_others_keep_running(
        supervise: Callable[..., Supervisor], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    broken = Child("broken", python("import sys; sys.exit(3)"))
    steady = Child("steady", python("import time; time.sleep(120)"))
    status_file = tmp_path / "parts.json"
    with caplog.at_level(logging.INFO, logger="gateway.serve.supervisor"):
        supervise([broken, steady], status_file=status_file)
        # Past the point where the old supervisor gave up and stopped everything.
        wait(lambda: broken.restarts >= FLAPPING_AFTER + 2, "restarts past the alert",
             timeout=60)
    assert broken.flapping
    assert broken.quick_failures >= FLAPPING_AFTER + 2
    assert steady.process is not None and steady.process.poll() is None
    assert steady.restarts == 0
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1, "the alert is raised once, not at every restart"
    assert "broken is flapping" in alerts[0].getMessage()
    assert "the other parts keep running" in alerts[0].getMessage()
    assert getattr(alerts[0], "part", None) == "broken"

    parts = read_status(status_file)
    assert parts is not None
    assert parts["steady"].state == PartState.RUNNING
    assert parts["broken"].flapping and not parts["broken"].healthy
    assert parts["broken"].restarts >= FLAPPING_AFTER

    samples = {(m.name, s.labels.get("part"), s.name): s.value
               for m in PartsCollector(status_file).collect() for s in m.samples}
    assert samples[("xgate_part_restarts", "broken", "xgate_part_restarts_total")] >= 5
    assert samples[("xgate_part_up", "steady", "xgate_part_up")] == 1
    assert samples[("xgate_part_flapping", "steady", "xgate_part_flapping")] == 0
    assert samples[("xgate_part_flapping", "broken", "xgate_part_flapping")] == 1


def test_a_part_that_runs_again_for_a_while_is_no_longer_flapping(
        supervise: Callable[..., Supervisor], tmp_path: Path) -> None:
    # Fails right after its start until its sixth start, then stays up.
    counter = tmp_path / "starts"
    code = (f"import pathlib, sys, time\np = pathlib.Path({str(counter)!r})\n"
            "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\n"
            f"sys.exit(3) if n <= {FLAPPING_AFTER} else time.sleep(120)")
    child = Child("recovering", python(code))
    status_file = tmp_path / "parts.json"
    supervise([child], status_file=status_file)
    wait(lambda: child.flapping, "the part to be flagged flapping", timeout=60)

    def cleared() -> bool:
        parts = read_status(status_file)
        return parts is not None and not parts["recovering"].flapping

    # Runs QUICK_FAILURE_SECONDS on the fast clock: then it has worked again.
    wait(cleared, "the flag to clear in the status file", timeout=QUICK_FAILURE_SECONDS)
    assert not child.flapping and child.quick_failures == 0
    parts = read_status(status_file)
    assert parts is not None and parts["recovering"].state == PartState.RUNNING


def test_a_part_that_worked_for_a_while_starts_its_backoff_again(
        supervise: Callable[..., Supervisor]) -> None:
    # 0.6 s real are 12 s on the fast clock: longer than a "quick" failure.
    child = Child("flaky", python("import time; time.sleep(0.6)"))
    supervise([child])
    wait(lambda: child.restarts >= FLAPPING_AFTER + 1, "restarts")
    assert child.quick_failures == 1
    assert not child.flapping


def test_the_status_file_says_nothing_once_the_supervisor_is_gone(tmp_path: Path) -> None:
    status_file = tmp_path / "parts.json"
    child = Child("steady", python("import time; time.sleep(120)"))
    supervisor = Supervisor([child], os.environ, status_file=status_file)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    wait(lambda: read_status(status_file) is not None, "the status file")
    supervisor.stop.set()
    runner.join(30)
    parts = read_status(status_file)
    assert parts is not None and parts["steady"].state == PartState.STOPPED
    # Written by a process that has exited (a part run alone, or a stale file): ignored.
    text = status_file.read_text().replace(f'"supervisor_pid": {os.getpid()}',
                                           '"supervisor_pid": 999999999')
    status_file.write_text(text)
    assert read_status(status_file) is None
    assert list(PartsCollector(status_file).collect()) == []


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
    wait(ready.exists, "the child to start", timeout=20)
    process = child.process
    supervisor.stop.set()
    runner.join(20)
    assert not runner.is_alive()
    assert getattr(supervisor, "status", None) == 0
    assert process is not None and process.returncode == -9
