"""Server-side login sessions: the browser holds a random token in a cookie, the database its
SHA-256 (a stolen database holds no usable session), the user, the CSRF token and how far the
login got (password only, or the second factor too).

A session ends after ``idle`` without a request or ``absolute`` after it began, whichever
comes first. The token is replaced (``rotate``) whenever the login gets further, so a token
planted in a browser before the login (session fixation) is worthless after it.

Data functions: they flush, the caller's transaction commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway.staff.models import WebSession
from gateway.web import csrf

COOKIE = "xgate_session"
# Noting every request's time would make each page view a write; a minute is precise enough
# for a timeout counted in minutes.
_TOUCH_EVERY = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class Timeouts:
    idle: timedelta
    absolute: timedelta


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start(session: Session, user_id: int, now: datetime, *,
          second_factor: bool = False) -> tuple[WebSession, str]:
    """A new session for ``user_id``; returns it and the token for the cookie."""
    token = secrets.token_urlsafe(32)
    row = WebSession(token_hash=_hash(token), user_id=user_id, csrf_token=csrf.new_token(),
                     second_factor=second_factor, created_at=now, last_seen_at=now)
    session.add(row)
    session.flush()
    return row, token


def lookup(session: Session, token: str | None, timeouts: Timeouts,
           now: datetime) -> WebSession | None:
    """The live session of this token (its last use noted), or None; an expired one is
    deleted."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = session.scalars(select(WebSession).where(
        WebSession.token_hash == _hash(token))).one_or_none()
    if row is None:
        return None
    if now - row.last_seen_at > timeouts.idle or now - row.created_at > timeouts.absolute:
        session.delete(row)
        session.flush()
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        row.last_seen_at = now
    return row


def rotate(session: Session, row: WebSession, now: datetime, *,
           second_factor: bool) -> str:
    """A new token (and CSRF token) for ``row``; the old token stops working at once."""
    token = secrets.token_urlsafe(32)
    row.token_hash = _hash(token)
    row.csrf_token = csrf.new_token()
    row.second_factor = second_factor
    row.last_seen_at = now
    session.flush()
    return token


def end(session: Session, row: WebSession) -> None:
    session.delete(row)
    session.flush()


def end_all(session: Session, user_id: int) -> int:
    """End every session of ``user_id`` (log out everywhere); returns how many."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_expired(session: Session, timeouts: Timeouts, now: datetime) -> int:
    result = session.execute(delete(WebSession).where(
        (WebSession.last_seen_at < now - timeouts.idle)
        | (WebSession.created_at < now - timeouts.absolute)))
    return int(result.rowcount)  # type: ignore[attr-defined]
