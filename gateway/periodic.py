"""A named job that runs every ``interval`` seconds in its own daemon thread.

The periodic jobs of the long-running processes (WAL checkpoints, the consent hold expiry,
the key expiry warning) share this loop: an error in one round is logged and the next round
runs as planned; nothing a job raises ends its thread.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class PeriodicJob(ABC):
    def __init__(self, name: str, interval: float, *, first_run_at_start: bool = True,
                 join_timeout: float | None = 5) -> None:
        self.name = name
        self.interval = interval
        # False: the first round runs one interval after start, not at once.
        self.first_run_at_start = first_run_at_start
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abstractmethod
    def run_once(self) -> None:
        """One round. Expected failures are handled here; anything else is logged."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.join_timeout)

    def _run(self) -> None:
        if not self.first_run_at_start and self._stop.wait(self.interval):
            return
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("%s: round failed; the next one runs in %ss", self.name,
                              self.interval)
            self._stop.wait(self.interval)
