"""The login throttle shared by every way in: the web login, the JSON API and SMTP AUTH.

Failed logins are counted per user name and per client address in the database, so every
process (web, SMTP) and every restart sees the same counts. After ``free_failures_per_user``
failures for a name (or ``free_failures_per_address`` from an address) each further attempt
is refused until a lockout ends; each failure during the lockout window doubles it, up to the
maximum. A locked attempt is refused before the password is checked: the attacker gets no
answer about it, and the argon2 cost is not paid for them.

The answer never depends on whether the user exists: names are counted whether or not they
belong to anyone, and the caller answers a locked name the same way in both cases. A
success clears the name's count (not the address's: one colleague's login must not clear
another's guesses from the same machine).

Data functions: they flush, the caller's transaction commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete
from sqlalchemy.orm import Session

from gateway.settings import LoginSettings
from gateway.staff.models import LoginFailure


class Key(StrEnum):
    USER = "user"
    ADDRESS = "address"


@dataclass(frozen=True)
class Attempt:
    """Who tries to log in: the user name as typed (None for a bearer token, which names no
    one) and the client's address (None when the transport has none, e.g. a Unix socket)."""

    username: str | None
    address: str | None

    def keys(self) -> list[tuple[Key, str]]:
        keys = []
        if self.username is not None:
            keys.append((Key.USER, _digest(self.username.casefold())))
        if self.address:
            keys.append((Key.ADDRESS, _digest(self.address)))
        return keys


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def locked_for(session: Session, attempt: Attempt, now: datetime) -> timedelta | None:
    """How long ``attempt`` must still wait, or None if it may try now."""
    waits = [row.locked_until - now for row in _rows(session, attempt)
             if row.locked_until is not None and row.locked_until > now]
    return max(waits) if waits else None


def record_failure(session: Session, attempt: Attempt, settings: LoginSettings,
                   now: datetime) -> None:
    """Count a failed login for the name and the address, locking either past its limit."""
    found = {(row.kind, row.key_hash): row for row in _rows(session, attempt)}
    for kind, key_hash in attempt.keys():
        row = found.get((kind, key_hash))
        if row is None:
            row = LoginFailure(kind=kind, key_hash=key_hash, failures=0, last_failure_at=now)
            session.add(row)
        elif now - row.last_failure_at > _forget_after(settings):
            # A long quiet time: the earlier failures are no longer part of an attack.
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        free = (settings.free_failures_per_user if kind == Key.USER
                else settings.free_failures_per_address)
        beyond = row.failures - free
        if beyond >= 0:
            seconds = min(settings.lockout_seconds * 2 ** min(beyond, 30),
                          settings.max_lockout_seconds)
            row.locked_until = now + timedelta(seconds=seconds)
    session.flush()


def record_success(session: Session, attempt: Attempt) -> None:
    """Forget the name's failures after a successful login."""
    for kind, key_hash in attempt.keys():
        if kind == Key.USER:
            session.execute(delete(LoginFailure).where(LoginFailure.kind == kind,
                                                       LoginFailure.key_hash == key_hash))


def purge_quiet(session: Session, settings: LoginSettings, now: datetime) -> int:
    """Forget counters quiet for longer than any lockout: record_failure would start them
    from zero anyway, and a hashed name or address has no reason to stay longer."""
    result = session.execute(delete(LoginFailure).where(
        LoginFailure.last_failure_at < now - _forget_after(settings)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _forget_after(settings: LoginSettings) -> timedelta:
    return timedelta(seconds=settings.max_lockout_seconds * 2)


def _rows(session: Session, attempt: Attempt) -> list[LoginFailure]:
    rows: list[LoginFailure] = []
    for kind, key_hash in attempt.keys():
        row = session.get(LoginFailure, (kind.value, key_hash))
        if row is not None:
            rows.append(row)
    return rows

