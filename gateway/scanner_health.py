"""Notices when the virus scanner has been failing for too long.

Mail waits while clamd is away (fail closed), which is right for a while and a problem when
it goes on: after ``alert_after`` seconds of failures without one success, an error is
logged and ``xgate_scanner_failing`` becomes 1, so monitoring can page someone.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime

from prometheus_client import Gauge

from gateway.clock import Clock
from gateway.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)


class ScannerHealth:
    def __init__(self, alert_after: float, clock: Clock) -> None:
        self.alert_after = alert_after
        self.clock = clock
        self._lock = threading.Lock()
        self._failing_since: datetime | None = None
        self.alerting = False
        # Only where worker metrics are collected (xgate serve); a gauge per process, and
        # the scrape shows the largest value of any worker.
        self._gauge = (Gauge("xgate_scanner_failing",
                             "1 while the virus scanner has been failing longer than allowed",
                             multiprocess_mode="max", registry=None)
                       if MULTIPROC_ENV in os.environ else None)

    def failed(self, reason: str) -> None:
        now = self.clock()
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            seconds = (now - self._failing_since).total_seconds()
            if seconds >= self.alert_after and not self.alerting:
                self.alerting = True
                log.error("virus scanner failing for %.0f s (%s); mail is held back in the "
                          "queue until it answers again", seconds, reason)
                if self._gauge is not None:
                    self._gauge.set(1)

    def succeeded(self) -> None:
        with self._lock:
            if self._failing_since is not None and self.alerting:
                log.warning("virus scanner answers again; held-back mail goes on")
            self._failing_since = None
            self.alerting = False
            if self._gauge is not None:
                self._gauge.set(0)
