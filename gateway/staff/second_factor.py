"""The second factor of a staff login: a TOTP secret (RFC 6238, as authenticator apps use)
and ten single-use recovery codes for a lost phone.

The secret is sealed under the master key (it must be read back to check a code); each code
is accepted once (the time step of the last accepted code is kept, so a code seen over a
shoulder cannot be replayed in its 30 seconds). Recovery codes are stored argon2-hashed and
shown once, when made.

Data functions: they flush, the caller's transaction commits. Recovery codes are checked with
``recovery_hashes`` (read), ``recovery_matches`` (argon2, outside any transaction) and
``spend_recovery_code`` (write), for the reason given in gateway.staff.login.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.errors import GatewayError
from gateway.staff.models import RecoveryCode, SecondFactor

ISSUER = "xgate"
RECOVERY_CODES = 10
# 10 characters of base32: 50 bits, typed from paper. Shown in groups of five.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 10
# OWASP's lighter argon2id profile: a recovery code check must not cost 64 MiB ten times over.
_recovery_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class SecondFactorError(GatewayError):
    """A second-factor operation was refused; the message says why."""


def _context(user_id: int) -> bytes:
    return f"xgate staff totp secret {user_id}".encode()


def enrolled(session: Session, user_id: int) -> bool:
    row = session.get(SecondFactor, user_id)
    return row is not None and row.confirmed_at is not None


def begin_enrolment(session: Session, user_id: int, master: MasterKey) -> str:
    """A new secret for ``user_id`` waiting for its first code (replacing one that waited);
    refused once a confirmed one exists (an admin resets it first)."""
    row = session.get(SecondFactor, user_id)
    if row is not None and row.confirmed_at is not None:
        raise SecondFactorError("a second factor is set up already")
    secret = pyotp.random_base32()
    sealed = seal(master, secret.encode("ascii"), _context(user_id))
    if row is None:
        session.add(SecondFactor(user_id=user_id, secret_sealed=sealed))
    else:
        row.secret_sealed, row.last_step = sealed, None
    session.flush()
    return secret


def enrol_confirmed(session: Session, user_id: int, master: MasterKey, now: datetime) -> str:
    """A confirmed secret at once, without the first code: for a demo user whose secret is
    printed to whoever set up the demo (never for a real account)."""
    secret = begin_enrolment(session, user_id, master)
    row = session.get(SecondFactor, user_id)
    assert row is not None
    row.confirmed_at = now
    session.flush()
    return secret


def pending_secret(session: Session, user_id: int, master: MasterKey) -> str | None:
    """The secret of an enrolment not yet confirmed, to show again; else None."""
    row = session.get(SecondFactor, user_id)
    if row is None or row.confirmed_at is not None:
        return None
    return _secret(row, master)


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def confirm_enrolment(session: Session, user_id: int, username: str, code: str,
                      master: MasterKey, now: datetime) -> list[str]:
    """Confirm the pending secret with a code from the app; returns the recovery codes."""
    row = session.get(SecondFactor, user_id)
    if row is None or row.confirmed_at is not None:
        raise SecondFactorError("no second factor is waiting for confirmation")
    if not _accept(row, code, master, now):
        raise SecondFactorError("the code is wrong")
    row.confirmed_at = now
    codes = new_recovery_codes(session, user_id)
    audit.record(session, actor=username, action=AuditAction.SECOND_FACTOR_ENROLLED,
                 detail={"user": username})
    return codes


def verify_code(session: Session, user_id: int, code: str, master: MasterKey,
                now: datetime) -> bool:
    """Whether ``code`` is the confirmed secret's current code (and not used before)."""
    row = session.get(SecondFactor, user_id)
    if row is None or row.confirmed_at is None:
        return False
    return _accept(row, code, master, now)


def _accept(row: SecondFactor, code: str, master: MasterKey, now: datetime) -> bool:
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return False
    totp = pyotp.TOTP(_secret(row, master))
    current = totp.timecode(now)
    # One step either side: phone clocks drift, and a code typed at the end of its window.
    for step in (current - 1, current, current + 1):
        if row.last_step is not None and step <= row.last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            row.last_step = step
            return True
    return False


def _secret(row: SecondFactor, master: MasterKey) -> str:
    return open_sealed(master, row.secret_sealed, _context(row.user_id)).decode("ascii")


def new_recovery_codes(session: Session, user_id: int) -> list[str]:
    """Ten fresh codes, replacing any earlier ones; the only time they are seen in clear."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = ["".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
             for _ in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(user_id=user_id, code_hash=_recovery_hasher.hash(code)))
    session.flush()
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def recovery_hashes(session: Session, user_id: int) -> list[tuple[int, str]]:
    """The unused codes of ``user_id`` as (id, hash)."""
    return [(row.id, row.code_hash) for row in session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user_id,
                                   RecoveryCode.used_at.is_(None)))]


def recovery_matches(hashes: list[tuple[int, str]], code: str) -> int | None:
    """The id of the code that ``code`` is, or None."""
    typed = code.strip().lower().replace("-", "").replace(" ", "")
    if len(typed) != _RECOVERY_LENGTH:
        return None
    for code_id, code_hash in hashes:
        try:
            _recovery_hasher.verify(code_hash, typed)
        except (VerificationError, InvalidHashError):
            continue
        return code_id
    return None


def spend_recovery_code(session: Session, code_id: int, username: str,
                        now: datetime) -> bool:
    """Mark the code used; False if it was spent meanwhile (two tabs, one code)."""
    spent = session.execute(update(RecoveryCode).where(
        RecoveryCode.id == code_id, RecoveryCode.used_at.is_(None)).values(used_at=now))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return False
    audit.record(session, actor=username, action=AuditAction.RECOVERY_CODE_USED,
                 detail={"user": username})
    return True


def reset(session: Session, user_id: int, username: str, *, actor: str) -> bool:
    """Remove the second factor and recovery codes (a lost phone); the user enrols again at
    their next login. Returns whether there was one."""
    existed = session.get(SecondFactor, user_id) is not None
    session.execute(delete(SecondFactor).where(SecondFactor.user_id == user_id))
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    if existed:
        audit.record(session, actor=actor, action=AuditAction.SECOND_FACTOR_RESET,
                     detail={"user": username})
    return existed
