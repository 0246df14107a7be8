"""What the users pages show of each staff account: global roles, mailbox memberships,
disabled or not, second factor set up or not, last web login. Never a password hash, a TOTP
secret or a recovery code.

A fixed number of statements for the whole list (not a few per user), so the page stays quick
with a few hundred accounts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import StaffAddress, StaffUser
from gateway.staff import tokens
from gateway.staff.models import SecondFactor, StaffRole
from gateway.staff.roles import GlobalRole
from mailboxes.models import Mailbox, MailboxMember, MemberRole


@dataclass(frozen=True)
class Membership:
    mailbox_id: int
    address: str
    name: str
    role: MemberRole


@dataclass(frozen=True)
class UserRow:
    user_id: int
    username: str
    roles: tuple[GlobalRole, ...]
    memberships: tuple[Membership, ...]
    # The envelope senders the user may submit mail with (SMTP AUTH on submission).
    addresses: tuple[str, ...]
    disabled: bool
    second_factor: bool
    last_login_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class MailboxChoice:
    mailbox_id: int
    address: str
    name: str


def user_rows(session: Session, user_id: int | None = None) -> list[UserRow]:
    """Every staff user by name (or only ``user_id``'s row)."""
    users = select(StaffUser).order_by(StaffUser.username)
    if user_id is not None:
        users = users.where(StaffUser.id == user_id)
    found = list(session.scalars(users))
    ids = [u.id for u in found]
    if not ids:
        return []
    held: dict[int, set[GlobalRole]] = defaultdict(set)
    for uid, role in session.execute(select(StaffRole.user_id, StaffRole.role)
                                     .where(StaffRole.user_id.in_(ids))):
        if role in GlobalRole.__members__.values():
            held[uid].add(GlobalRole(role))
    enrolled = set(session.scalars(select(SecondFactor.user_id).where(
        SecondFactor.user_id.in_(ids), SecondFactor.confirmed_at.is_not(None))))
    boxes: dict[int, list[Membership]] = defaultdict(list)
    for uid, box_id, address, name, role in session.execute(
            select(MailboxMember.user_id, Mailbox.id, Mailbox.address, Mailbox.name,
                   MailboxMember.role)
            .join(Mailbox, Mailbox.id == MailboxMember.mailbox_id)
            .where(MailboxMember.user_id.in_(ids)).order_by(Mailbox.address)):
        boxes[uid].append(Membership(box_id, address, name, MemberRole(role)))
    senders: dict[int, list[str]] = defaultdict(list)
    for uid, address in session.execute(
            select(StaffAddress.user_id, StaffAddress.address)
            .where(StaffAddress.user_id.in_(ids)).order_by(StaffAddress.address)):
        senders[uid].append(address)
    order = list(GlobalRole)
    rows = []
    for user in found:
        roles = held[user.id] | ({GlobalRole.ADMIN} if user.admin else set())
        rows.append(UserRow(user.id, user.username, tuple(sorted(roles, key=order.index)),
                            tuple(boxes[user.id]), tuple(senders[user.id]), user.disabled,
                            user.id in enrolled,
                            user.last_login_at, user.created_at))
    return rows


@dataclass(frozen=True)
class TokenRow:
    """An API token as the page shows it: never the token or its hash."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def token_rows(session: Session, username: str) -> list[TokenRow]:
    return [TokenRow(t.id, t.name, t.created_at, t.last_used_at, t.revoked_at)
            for t in tokens.list_tokens(session, username)]


def mailbox_choices(session: Session) -> list[MailboxChoice]:
    return [MailboxChoice(m.id, m.address, m.name) for m in session.scalars(
        select(Mailbox).order_by(Mailbox.address))]
