"""The periodic jobs' common loop: an error in one round does not end the job."""

from __future__ import annotations

import threading

import pytest

from gateway.periodic import PeriodicJob


class _Flaky(PeriodicJob):
    def __init__(self, *, first_run_at_start: bool = True) -> None:
        super().__init__("flaky", 0.01, first_run_at_start=first_run_at_start)
        self.rounds = 0
        self.third = threading.Event()

    def run_once(self) -> None:
        self.rounds += 1
        if self.rounds == 3:
            self.third.set()
        if self.rounds == 1:
            raise RuntimeError("a bug in the first round")


def test_an_error_is_logged_and_the_next_round_runs(caplog: pytest.LogCaptureFixture) -> None:
    job = _Flaky()
    job.start()
    try:
        assert job.third.wait(5)
    finally:
        job.stop()
    assert "flaky: round failed" in caplog.text
    assert not job._thread.is_alive()


def test_a_job_that_waits_first_runs_nothing_when_stopped_at_once() -> None:
    job = _Flaky(first_run_at_start=False)
    job.interval = 60
    job.start()
    job.stop()
    assert job.rounds == 0 and not job._thread.is_alive()
