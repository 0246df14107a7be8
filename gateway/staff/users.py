"""Staff accounts for the submission listener: argon2id password hashes, never the password.

Data functions: they flush but never commit; the caller's ``session_scope`` owns the
transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gateway.errors import GatewayError
from gateway.models import StaffAddress, StaffUser, utcnow

log = logging.getLogger(__name__)

# argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, 64 MiB).
_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12
# argon2 takes any length, but a megabyte "password" is a denial-of-service attempt.
MAX_PASSWORD_LENGTH = 1024
MAX_USERNAME_LENGTH = 255


class StaffError(GatewayError):
    """A staff account operation was refused; the message says why."""


class UserExists(StaffError):
    """The user name is taken."""


class BadUsername(StaffError):
    """The user name is empty, too long, or has spaces or control characters."""


class BadAddress(StaffError):
    """Not an address mail can be sent from."""


class LastAdmin(StaffError):
    """The change would leave the office without an active admin."""


# A generated password is read off a screen and typed once: no 0/o, 1/l/i look-alikes.
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 (an alphabet)
_PASSWORD_GROUPS = 5
_PASSWORD_GROUP_LENGTH = 4


def find_user(session: Session, username: str) -> StaffUser | None:
    return session.scalars(
        select(StaffUser).where(StaffUser.username == username)
    ).one_or_none()


def add_user(session: Session, username: str, password: str, *,
             addresses: Sequence[str] = (), now: datetime | None = None,
             admin: bool = False) -> StaffUser:
    _check_username(username)
    _check_password(password)
    if find_user(session, username) is not None:
        raise UserExists(f"staff user {username} exists already")
    user = StaffUser(username=username, password_hash=_hasher.hash(password), disabled=False,
                     admin=admin, created_at=now or utcnow())
    session.add(user)
    session.flush()
    for address in addresses:
        add_address(session, username, address)
    return user


def list_users(session: Session) -> list[StaffUser]:
    """Every staff user by name, with their sender addresses loaded."""
    return list(session.scalars(
        select(StaffUser).options(selectinload(StaffUser.addresses))
        .order_by(StaffUser.username)))


def add_address(session: Session, username: str, address: str) -> bool:
    """Let ``username`` submit with envelope sender ``address``; False if it could already."""
    user = _existing(session, username)
    normalised = normalise_address(address)
    local, at, domain = normalised.partition("@")
    if not local or not at or "." not in domain or any(c.isspace() for c in normalised):
        raise BadAddress(f"not a valid sender address: {address!r}")
    if normalised in {a.address for a in user.addresses}:
        return False
    user.addresses.append(StaffAddress(address=normalised))
    session.flush()
    return True


def remove_address(session: Session, username: str, address: str) -> bool:
    """Take envelope sender ``address`` from ``username``; False if they did not have it."""
    user = _existing(session, username)
    normalised = normalise_address(address)
    owned = [a for a in user.addresses if a.address == normalised]
    if not owned:
        return False
    for entry in owned:
        user.addresses.remove(entry)
    session.flush()
    return True


def normalise_address(address: str) -> str:
    return address.strip().lower()


def sender_addresses(session: Session, username: str) -> frozenset[str]:
    """The envelope senders ``username`` may submit with (lower case)."""
    return frozenset(session.scalars(
        select(StaffAddress.address).join(StaffUser)
        .where(StaffUser.username == username)))


def set_password(session: Session, username: str, password: str) -> None:
    _check_password(password)
    user = _existing(session, username)
    user.password_hash = _hasher.hash(password)
    session.flush()


def generate_password() -> str:
    """A random password for a new account or a reset (about 98 bits, in groups of four),
    shown once to the admin who hands it over."""
    return "-".join("".join(secrets.choice(_PASSWORD_ALPHABET)
                            for _ in range(_PASSWORD_GROUP_LENGTH))
                    for _ in range(_PASSWORD_GROUPS))


def note_login(session: Session, user_id: int, now: datetime) -> None:
    """Remember when ``user_id`` last completed a web login (shown to admins)."""
    user = session.get(StaffUser, user_id)
    if user is not None:
        user.last_login_at = now
        session.flush()


def set_disabled(session: Session, username: str, disabled: bool) -> bool:
    """Disable or enable ``username``; returns whether it was disabled before."""
    user = _existing(session, username)
    before = user.disabled
    user.disabled = disabled
    session.flush()
    return before


def set_admin(session: Session, username: str, admin: bool) -> bool:
    """Grant or revoke the admin right; returns whether it was held before."""
    user = _existing(session, username)
    before = user.admin
    user.admin = admin
    session.flush()
    return before


def verify_password(session: Session, username: str, password: str) -> StaffUser | None:
    """The enabled user whose password this is, else None.

    Holds the caller's transaction open for the length of an argon2 verification; on SQLite
    that is the database's write lock. The SMTP edge uses the pieces below instead and
    verifies between two short transactions.
    """
    user = find_user(session, username) if _plausible(username, password) else None
    if not password_matches(user.password_hash if user else None, password):
        return None
    assert user is not None
    if user.disabled:
        return None
    if needs_rehash(user.password_hash):
        upgrade_hash(session, username, password)
    return user


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; None (no such user) never matches.

    No user costs the same argon2 verification as a real one, so response time does not tell
    which user names exist.
    """
    try:
        _hasher.verify(password_hash or _dummy_hash(), password)
    except InvalidHashError:
        log.error("staff user has an unreadable password hash")
        return False
    except VerificationError:
        return False
    return password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def upgrade_hash(session: Session, username: str, password: str) -> None:
    """Re-hash a verified password with the current parameters (raised since it was set).

    No password policy check here: the user proved they know this password, and a policy
    tightened later is for the next password change to enforce.
    """
    user = _existing(session, username)
    user.password_hash = _hasher.hash(password)
    session.flush()


@cache
def _dummy_hash() -> str:
    return _hasher.hash("timing-equaliser-not-a-password")


def _plausible(username: str, password: str) -> bool:
    return 0 < len(username) <= MAX_USERNAME_LENGTH and len(password) <= MAX_PASSWORD_LENGTH


def _existing(session: Session, username: str) -> StaffUser:
    user = find_user(session, username)
    if user is None:
        raise StaffError(f"no staff user {username}")
    return user


def _check_username(username: str) -> None:
    if not username or len(username) > MAX_USERNAME_LENGTH:
        raise BadUsername(f"user name must be 1 to {MAX_USERNAME_LENGTH} characters")
    # SASL PLAIN separates fields with NUL; spaces and control characters only cause
    # look-alike names and log confusion.
    if any(ch.isspace() or not ch.isprintable() for ch in username):
        raise BadUsername("user name must not contain spaces or control characters")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffError(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    if "\x00" in password:
        raise StaffError("password must not contain NUL characters")
