"""Group commit for the SMTP edge.

Every accepted message must be durable (committed, fsynced) before its 250. Committing each
one alone makes the fsync and, on SQLite, the single write lock the limit: sessions queue
behind each other. Here one thread commits whatever has arrived meanwhile in one transaction,
so concurrent sessions share a commit and an fsync. Each caller still hears back only after
the transaction holding its message has committed.

If a batch fails, its messages are retried one by one, so one bad message cannot take the
others down with it; each caller gets its own success or error.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from gateway.db import session_scope
from gateway.queue.spool import Arrival, Prepared, Stored, store_batch
from gateway.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    arrival: Arrival
    result: Future[Stored]


class IntakeCommitter:
    def __init__(self, services: Services, max_batch: int = 64) -> None:
        self.services = services
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="intake-committer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        if self._started:
            self._jobs.put(None)
            self._thread.join(timeout)
            self._started = False

    def submit(self, prepared: Prepared, *, actor: str, now: datetime) -> Future[Stored]:
        """Queue a prepared message; the future resolves once it is committed."""
        if not self._started:
            raise RuntimeError("intake committer is not running")
        job = _Job(Arrival(prepared, actor, now), Future())
        self._jobs.put(job)
        return job.result

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            self._commit(batch)
            # Let go of the batch now, not when the next message arrives: each job holds
            # its message and the sealed copy (2x a 50 MB message, kept by an idle edge).
            first = job = None
            batch = []
            if stopping:
                return

    def _commit(self, batch: list[_Job]) -> None:
        try:
            stored = self._store(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake commit failed: %s", type(exc).__name__, exc_info=True)
                batch[0].result.set_exception(exc)
                return
            log.warning("intake batch of %d failed (%s); committing one by one",
                        len(batch), type(exc).__name__)
            for job in batch:
                self._commit([job])
            return
        for job, result in zip(batch, stored, strict=True):
            job.result.set_result(result)

    def _store(self, batch: list[_Job]) -> list[Stored]:
        with session_scope(self.services.sessions) as session:
            return store_batch(session, [job.arrival for job in batch])
