"""A password login, the same for every way in (web login, JSON API, SMTP AUTH): the
throttle first, then the argon2 check, then the outcome counted.

The check runs between two short transactions, never inside one: argon2 takes tens of
milliseconds, and on SQLite an open write transaction would hold up the SMTP edge and the
workers that long. A locked attempt costs one read and no argon2 at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from gateway.db import read_scope, session_scope
from gateway.settings import LoginSettings
from gateway.staff import throttle
from gateway.staff import users as staff
from gateway.staff.throttle import Attempt


@dataclass(frozen=True)
class Verified:
    user_id: int
    username: str


@dataclass(frozen=True)
class Refused:
    """Wrong name or password, or a disabled user: one answer for all three."""


@dataclass(frozen=True)
class Locked:
    """Too many failures for this name or address; try again after ``wait``."""

    wait: timedelta


LoginOutcome = Verified | Refused | Locked


def password_login(sessions: sessionmaker[Session], attempt: Attempt, password: str,
                   settings: LoginSettings, now: datetime) -> LoginOutcome:
    username = attempt.username or ""
    plausible = (0 < len(username) <= staff.MAX_USERNAME_LENGTH
                 and len(password) <= staff.MAX_PASSWORD_LENGTH)
    password_hash: str | None = None
    user_id, enabled = 0, False
    with read_scope(sessions) as session:
        wait = throttle.locked_for(session, attempt, now)
        if wait is not None:
            return Locked(wait)
        user = staff.find_user(session, username) if plausible else None
        if user is not None:
            password_hash, user_id, enabled = user.password_hash, user.id, not user.disabled
    # Unknown users cost the same verification, so timing does not reveal user names.
    ok = staff.password_matches(password_hash, password) and enabled
    with session_scope(sessions) as session:
        if not ok:
            throttle.record_failure(session, attempt, settings, now)
            return Refused()
        throttle.record_success(session, attempt)
        assert password_hash is not None
        if staff.needs_rehash(password_hash):
            staff.upgrade_hash(session, username, password)
    return Verified(user_id, username)


def note_failure(sessions: sessionmaker[Session], attempt: Attempt, settings: LoginSettings,
                 now: datetime) -> None:
    """Count a failure found outside password_login (e.g. a wrong second factor)."""
    with session_scope(sessions) as session:
        throttle.record_failure(session, attempt, settings, now)
