"""Global roles of staff users: admin (the ``staff_users.admin`` flag, as before), auditor and
data-protection officer (rows in ``staff_roles``). Mailbox roles (lead, agent) belong to a
mailbox's members (mailboxes/).

What a role may do is decided in admin_ui.security.rights, not here.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.models import StaffUser
from gateway.staff import actions
from gateway.staff import users as staff
from gateway.staff.models import StaffRole


class GlobalRole(StrEnum):
    ADMIN = "admin"
    AUDITOR = "auditor"
    # Datenschutzbeauftragte(r).
    DPO = "dpo"


def parse_role(name: str) -> GlobalRole:
    try:
        return GlobalRole(name.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in GlobalRole)
        raise staff.StaffError(f"no role {name!r}; roles are {known}") from None


def roles_of(session: Session, user_id: int, admin: bool) -> frozenset[GlobalRole]:
    held = {GlobalRole(r) for r in session.scalars(
        select(StaffRole.role).where(StaffRole.user_id == user_id)) if r in _TABLE_ROLES}
    if admin:
        held.add(GlobalRole.ADMIN)
    return frozenset(held)


def grant(session: Session, username: str, role: GlobalRole, *, actor: str) -> bool:
    """Grant ``role``; False (and no audit entry) if it was held already."""
    if role is GlobalRole.ADMIN:
        return actions.set_admin(session, username, True, actor=actor)
    user = _user(session, username)
    if role in roles_of(session, user.id, user.admin):
        return False
    session.add(StaffRole(user_id=user.id, role=role.value))
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.ROLE_GRANTED,
                 detail={"user": username, "role": role.value})
    return True


def revoke(session: Session, username: str, role: GlobalRole, *, actor: str) -> bool:
    """Take ``role`` away; False (and no audit entry) if it was not held."""
    if role is GlobalRole.ADMIN:
        return actions.set_admin(session, username, False, actor=actor)
    user = _user(session, username)
    removed = session.execute(delete(StaffRole).where(
        StaffRole.user_id == user.id, StaffRole.role == role.value))
    if removed.rowcount == 0:  # type: ignore[attr-defined]
        return False
    audit.record(session, actor=actor, action=AuditAction.ROLE_REVOKED,
                 detail={"user": username, "role": role.value})
    return True


def _user(session: Session, username: str) -> StaffUser:
    user = staff.find_user(session, username)
    if user is None:
        raise staff.StaffError(f"no staff user {username}")
    return user


_TABLE_ROLES = {GlobalRole.AUDITOR.value, GlobalRole.DPO.value}
