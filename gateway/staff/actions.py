"""Changes to staff accounts made by a person, each recorded in the audit trail.

Who may log in, send as which address and approve keys or releases decides what leaves the
office, so every such change is an audit entry in the same transaction as the change, naming
who made it and what changed, never a password or its hash. An entry is written only when
something changed: granting a right the user already has records nothing.

The data functions in gateway.staff.users do not audit; code acting for a person (the CLI, admin
pages) calls these. The rules that hold whoever acts are here too: the last active admin can
neither lose the right nor be disabled (nobody could then manage users, keys or quarantine
from the web app), and a disabled user, a new password or a reset second factor ends the
user's web sessions at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.models import StaffUser
from gateway.staff import second_factor
from gateway.staff import users as staff
from gateway.web import sessions as web_sessions


def create_user(session: Session, username: str, password: str, *, actor: str,
                addresses: Sequence[str] = (), admin: bool = False,
                now: datetime | None = None) -> StaffUser:
    user = staff.add_user(session, username, password, addresses=addresses, now=now,
                          admin=admin)
    audit.record(session, actor=actor, action=AuditAction.USER_ADDED, detail={
        "user": username, "admin": admin, "addresses": [a.address for a in user.addresses]})
    return user


def grant_address(session: Session, username: str, address: str, *, actor: str) -> bool:
    """Let ``username`` submit as ``address``; False (and no entry) if they could already."""
    added = staff.add_address(session, username, address)
    if added:
        audit.record(session, actor=actor, action=AuditAction.USER_ADDRESS_ADDED,
                     detail={"user": username, "address": staff.normalise_address(address)})
    return added


def remove_address(session: Session, username: str, address: str, *, actor: str) -> bool:
    """Stop ``username`` submitting as ``address``; False (and no entry) if they could not."""
    removed = staff.remove_address(session, username, address)
    if removed:
        audit.record(session, actor=actor, action=AuditAction.USER_ADDRESS_REMOVED,
                     detail={"user": username, "address": staff.normalise_address(address)})
    return removed


def set_admin(session: Session, username: str, admin: bool, *, actor: str) -> bool:
    """Grant or revoke the admin right; returns whether it changed. Refused (LastAdmin) for
    the last active admin."""
    if not admin:
        _keep_an_admin(session, username)
    changed = staff.set_admin(session, username, admin) != admin
    if changed:
        audit.record(session, actor=actor,
                     action=AuditAction.ADMIN_GRANTED if admin else AuditAction.ADMIN_REVOKED,
                     detail={"user": username})
    return changed


def set_disabled(session: Session, username: str, disabled: bool, *, actor: str) -> bool:
    """Disable or enable ``username``; returns whether it changed.

    A disabled user's password no longer works anywhere (SMTP AUTH, the API, the CLI's
    ``--by``/``--admin``), and their pending quarantine approvals stop counting; their web
    sessions end. Refused (LastAdmin) for the last active admin.
    """
    if disabled:
        _keep_an_admin(session, username)
    changed = staff.set_disabled(session, username, disabled) != disabled
    if changed and disabled:
        _end_web_sessions(session, username)
    if changed:
        audit.record(session, actor=actor,
                     action=AuditAction.USER_DISABLED if disabled else AuditAction.USER_ENABLED,
                     detail={"user": username})
    return changed


def change_password(session: Session, username: str, password: str, *, actor: str) -> None:
    """A new password; every web session of the user ends with the old one (API tokens are
    credentials of their own and stay until revoked)."""
    staff.set_password(session, username, password)
    _end_web_sessions(session, username)
    # The fact only: neither the password nor its hash belongs in the trail.
    audit.record(session, actor=actor, action=AuditAction.USER_PASSWORD_CHANGED,
                 detail={"user": username})


def reset_second_factor(session: Session, username: str, *, actor: str) -> bool:
    """Remove ``username``'s second factor and recovery codes (a lost phone): they set up a
    new one at their next login, and their web sessions end now. Returns whether there was
    one (audited only then; the sessions end either way)."""
    user = staff.find_user(session, username)
    if user is None:
        raise staff.StaffError(f"no staff user {username}")
    had = second_factor.reset(session, user.id, user.username, actor=actor)
    web_sessions.end_all(session, user.id)
    return had


def _keep_an_admin(session: Session, username: str) -> None:
    """LastAdmin if ``username`` is the only enabled admin (so the change at hand, revoking
    the right or disabling them, would leave none)."""
    user = staff.find_user(session, username)
    if user is None or not user.admin or user.disabled:
        return
    # Every active admin row locked (PostgreSQL): two admins disabling each other at once
    # are serialised, and the second one sees the first change. SQLite serialises writers.
    active = session.scalars(select(StaffUser.id).where(
        StaffUser.admin.is_(True), StaffUser.disabled.is_(False)).with_for_update()).all()
    if not set(active) - {user.id}:
        raise staff.LastAdmin(f"staff user {username} is the last active admin; "
                              "make another user an admin first")


def _end_web_sessions(session: Session, username: str) -> None:
    user = staff.find_user(session, username)
    if user is not None:
        web_sessions.end_all(session, user.id)
