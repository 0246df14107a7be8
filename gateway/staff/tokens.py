"""Per-user tokens for the JSON API (``Authorization: Bearer xg_...``).

A token is 32 random bytes, shown once when made and stored only as its SHA-256: enough for a
value no one can guess, and cheap to check on every request (no argon2, so no throttle is
needed for tokens; a wrong token is still counted against the client address by the API).
A token works only while its user is enabled and it is not revoked.

Data functions: they flush, the caller's transaction commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.models import StaffUser
from gateway.staff import users as staff
from gateway.staff.models import ApiToken

PREFIX = "xg_"
MAX_NAME_LENGTH = 100
# The longest header value worth hashing: a token is 46 characters.
MAX_TOKEN_LENGTH = 200


class BadTokenName(staff.StaffError):
    """A token's name is empty, too long or not printable."""


class UnknownToken(staff.StaffError):
    """The user has no token of that id."""


@dataclass(frozen=True)
class TokenUser:
    user_id: int
    username: str
    admin: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(session: Session, username: str, name: str, *, actor: str,
           now: datetime) -> tuple[ApiToken, str]:
    """A new token for ``username``; returns the row and the token (never stored)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise BadTokenName(f"token name must be 1 to {MAX_NAME_LENGTH} printable characters")
    user = staff.find_user(session, username)
    if user is None:
        raise staff.StaffError(f"no staff user {username}")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=token_hash(token), created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.API_TOKEN_CREATED,
                 detail={"user": username, "token": row.id, "name": name})
    return row, token


def list_tokens(session: Session, username: str) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).join(StaffUser, ApiToken.user_id == StaffUser.id)
                                .where(StaffUser.username == username).order_by(ApiToken.id)))


def revoke(session: Session, username: str, token_id: int, *, actor: str,
           now: datetime) -> bool:
    """Revoke one of ``username``'s tokens; False if it was revoked already."""
    row = next((t for t in list_tokens(session, username) if t.id == token_id), None)
    if row is None:
        raise UnknownToken(f"staff user {username} has no token {token_id}")
    if row.revoked_at is not None:
        return False
    row.revoked_at = now
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.API_TOKEN_REVOKED,
                 detail={"user": username, "token": token_id})
    return True


def user_for_token(session: Session, token: str, now: datetime) -> TokenUser | None:
    """The enabled user a valid token belongs to (its last use noted), else None."""
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    found = session.execute(
        select(ApiToken, StaffUser).join(StaffUser, ApiToken.user_id == StaffUser.id)
        .where(ApiToken.token_hash == token_hash(token))).one_or_none()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or user.disabled:
        return None
    row.last_used_at = now
    return TokenUser(user.id, user.username, user.admin)
