"""Forgetting what logins leave behind: web sessions past their timeouts and login-failure
counters quiet for longer than any lockout.

Expired sessions are refused when they are presented, so this is about not keeping rows
(who was logged in when, hashed names and addresses) longer than they serve. The web app
runs it while it runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from gateway.clock import Clock
from gateway.db import session_scope
from gateway.periodic import PeriodicJob
from gateway.settings import Settings
from gateway.staff import throttle
from gateway.web import sessions as web_sessions

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 15 * 60


def sweep(session: Session, settings: Settings, clock: Clock) -> tuple[int, int]:
    """Remove expired sessions and quiet throttle counters; returns how many of each."""
    now = clock()
    timeouts = web_sessions.Timeouts(
        idle=timedelta(minutes=settings.web.session_idle_minutes),
        absolute=timedelta(hours=settings.web.session_absolute_hours))
    return (web_sessions.purge_expired(session, timeouts, now),
            throttle.purge_quiet(session, settings.login, now))


class LoginHousekeeping(PeriodicJob):
    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 clock: Clock) -> None:
        # Not at start: nothing can have expired yet that the last run left.
        super().__init__("login-housekeeping", INTERVAL_SECONDS, first_run_at_start=False)
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    def run_once(self) -> None:
        with session_scope(self.sessions) as session:
            ended, forgotten = sweep(session, self.settings, self.clock)
        if ended or forgotten:
            log.info("removed %d expired web sessions and %d quiet login-failure counters",
                     ended, forgotten)
