"""Who works in a shared mailbox, and as what (lead or agent).

The web app's rights module asks ``role_in`` and ``mailboxes_of``; the CLI and the admin
pages change membership through ``add_member``/``remove_member``, each recorded in the
audit trail in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from gateway.models import StaffUser
from gateway.staff.users import find_user
from mailboxes.directory import MailboxError, find_mailbox, normalise_address
from mailboxes.models import Mailbox, MailboxMember, MemberRole


@dataclass(frozen=True)
class Member:
    user_id: int
    username: str
    role: MemberRole
    added_at: datetime


def parse_role(text: str) -> MemberRole:
    try:
        return MemberRole(text.strip().lower())
    except ValueError:
        raise MailboxError(f"unknown role {text!r}: use "
                           + " or ".join(r.value for r in MemberRole)) from None


def add_member(session: Session, mailbox_address: str, username: str, role: MemberRole, *,
               actor: str, now: datetime) -> bool:
    """Make a staff user a member (or change their role); False if nothing changed."""
    mailbox, user = _mailbox(session, mailbox_address), _user(session, username)
    row = session.scalars(select(MailboxMember).where(
        MailboxMember.mailbox_id == mailbox.id, MailboxMember.user_id == user.id)
    ).one_or_none()
    if row is not None and row.role == role:
        return False
    before = None if row is None else row.role
    if row is None:
        session.add(MailboxMember(mailbox_id=mailbox.id, user_id=user.id, role=role.value,
                                  added_at=now))
    else:
        row.role = role.value
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.MAILBOX_MEMBER_ADDED, detail={
        "mailbox": mailbox.address, "user": user.username, "role": role.value,
        "previous_role": before})
    return True


def remove_member(session: Session, mailbox_address: str, username: str, *,
                  actor: str) -> bool:
    mailbox, user = _mailbox(session, mailbox_address), _user(session, username)
    removed = session.execute(delete(MailboxMember).where(
        MailboxMember.mailbox_id == mailbox.id, MailboxMember.user_id == user.id)
    ).rowcount  # type: ignore[attr-defined]
    if not removed:
        return False
    audit.record(session, actor=actor, action=AuditAction.MAILBOX_MEMBER_REMOVED, detail={
        "mailbox": mailbox.address, "user": user.username})
    return True


def list_members(session: Session, mailbox_address: str) -> list[Member]:
    mailbox = _mailbox(session, mailbox_address)
    rows = session.execute(
        select(MailboxMember.user_id, StaffUser.username, MailboxMember.role,
               MailboxMember.added_at)
        .join(StaffUser, StaffUser.id == MailboxMember.user_id)
        .where(MailboxMember.mailbox_id == mailbox.id).order_by(StaffUser.username))
    return [Member(uid, name, MemberRole(role), at) for uid, name, role, at in rows]


_members = table_of(MailboxMember)
_ROLE = select(_members.c.role).where(_members.c.user_id == bindparam("user"),
                                      _members.c.mailbox_id == bindparam("box"))


def role_in(session: Session, user_id: int, mailbox_id: int) -> MemberRole | None:
    """The user's role in the mailbox; None if they are no member (they see nothing)."""
    role = session.execute(_ROLE, {"user": user_id, "box": mailbox_id}).scalar_one_or_none()
    return None if role is None else MemberRole(role)


def mailboxes_of(session: Session, user_id: int) -> list[tuple[Mailbox, MemberRole]]:
    """The mailboxes the user is a member of, by address, with their role in each."""
    rows = session.execute(
        select(Mailbox, MailboxMember.role)
        .join(MailboxMember, MailboxMember.mailbox_id == Mailbox.id)
        .where(MailboxMember.user_id == user_id).order_by(Mailbox.address))
    return [(mailbox, MemberRole(role)) for mailbox, role in rows]


def _mailbox(session: Session, address: str) -> Mailbox:
    mailbox = find_mailbox(session, address)
    if mailbox is None:
        raise MailboxError(f"no mailbox {normalise_address(address)}")
    return mailbox


def _user(session: Session, username: str) -> StaffUser:
    user = find_user(session, username)
    if user is None:
        raise MailboxError(f"no staff user {username!r}")
    return user
