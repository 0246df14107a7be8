"""Forgetting the portal's rate-limit hits (hashed client addresses) after
``portal.ip_retention_hours``, while the portal runs, even when nobody submits (each
submission forgets the old ones too)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from gateway.clock import Clock
from gateway.db import session_scope
from gateway.periodic import PeriodicJob
from gateway.portal import rate_limits
from gateway.settings import PortalSettings

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 15 * 60


class RateHitHousekeeping(PeriodicJob):
    def __init__(self, sessions: sessionmaker[Session], portal: PortalSettings,
                 clock: Clock) -> None:
        # At start too: a portal that was down for a day may find hits past the retention.
        super().__init__("portal-housekeeping", INTERVAL_SECONDS, first_run_at_start=True)
        self.sessions = sessions
        self.portal = portal
        self.clock = clock

    def run_once(self) -> None:
        with session_scope(self.sessions) as session:
            forgotten = rate_limits.forget_old(session, self.portal, self.clock())
        if forgotten:
            log.info("forgot %d portal rate-limit hits past the retention", forgotten)
