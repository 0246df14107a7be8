"""Keeping a claimed message's lease alive while its pipeline runs.

A stage may legitimately take long (a slow next hop, a large scan). If the lease ran out
meanwhile, another worker would take the message over and deliver it a second time, so a
heartbeat renews it every third of its length for as long as the worker holds the message.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from gateway.db import session_scope
from gateway.queue.store import Claim, renew_lease
from gateway.services import Services

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, services: Services, claim: Claim) -> None:
        self.services = services
        self.claim = claim
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{claim.queue_id}")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        lease = self.services.settings.workers.lease_seconds
        while not self._stop.wait(lease / 3):
            try:
                with session_scope(self.services.sessions) as session:
                    renewed = renew_lease(session, self.claim, self.services.clock(), lease)
            except SQLAlchemyError as exc:
                # Try again at the next beat; the lease still has two thirds to run.
                log.warning("%s: lease renewal failed: %s", self.claim.queue_id,
                            type(exc).__name__)
                continue
            if not renewed:
                self.lost = True
                log.warning("%s: lease lost to another worker", self.claim.queue_id)
                return
