"""Rights: what a logged-in staff user may do, decided here and nowhere else.

Every active staff user who completed the login may use the consent register (caseworkers
record the releases they obtained) and the start page; only staff with the admin role may use
the key directory and the partners. The auditor and data-protection officer roles exist (they
are granted with ``xgate user role``) for the pages that will need them. Mailbox roles (lead,
agent) are decided by the mailbox memberships (mailboxes.members.role_in): ``check_mailbox``
and ``check_ticket`` below, called by the mailbox and ticket pages for every id in a URL.

Routers and pages depend on ``staff_user`` or ``admin_user`` (FastAPI dependencies reading
the identity that admin_ui.security.guard settled before the body was read) and never read a
user's roles themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from admin_ui.security.errors import Forbidden
from admin_ui.security.guard import staff_of
from admin_ui.security.identity import Admin, Staff
from gateway.consent.errors import ConsentError, ConsentNotFound
from gateway.consent.holds import HeldReport
from gateway.consent.records import release_mailbox
from gateway.consent.teams import report_mailboxes
from gateway.staff.roles import GlobalRole
from gateway.tasks.views import TaskView
from mailboxes.members import role_in
from mailboxes.models import MailboxMember, MemberRole
from mailboxes.tickets.models import Ticket


def check_admin(user: Staff) -> Admin:
    """``user`` as an admin, or Forbidden: the one check of the admin right."""
    if GlobalRole.ADMIN not in user.roles:
        raise Forbidden(f"staff user {user.username} is not an admin")
    return Admin(user.username)


# --- the admin console (issue 16) --------------------------------------------------------------
# The auditor and the data-protection officer read the transfer pages and the audit trail,
# nothing else; only admins change quarantine, keys, partners and users; caseworkers (every
# staff user who is not only an auditor or DPO) use the consent register for the cases of their
# own mailboxes (which cases, the consent pages decide with the mailbox checks below).


class ConsoleArea(StrEnum):
    """An area of the admin console; its value is the path below /console."""

    TRANSFERS = "transfers"
    AUDIT = "audit"
    QUARANTINE = "quarantine"
    CONSENT = "consent"
    PARTNERS = "partners"
    KEYS = "keys"
    USERS = "users"


_READERS = frozenset({GlobalRole.ADMIN, GlobalRole.AUDITOR, GlobalRole.DPO})
_ONLY_READING = frozenset({GlobalRole.AUDITOR, GlobalRole.DPO})
_ADMIN_AREAS = (ConsoleArea.QUARANTINE, ConsoleArea.PARTNERS, ConsoleArea.KEYS,
                ConsoleArea.USERS)


def console_areas(user: Staff) -> tuple[ConsoleArea, ...]:
    """The console areas ``user`` may open, in the navigation's order."""
    areas: list[ConsoleArea] = []
    if user.roles & _READERS:
        areas += [ConsoleArea.TRANSFERS, ConsoleArea.AUDIT]
    if not user.roles or not user.roles <= _ONLY_READING:
        areas.append(ConsoleArea.CONSENT)
    if GlobalRole.ADMIN in user.roles:
        areas += list(_ADMIN_AREAS)
    return tuple(sorted(areas, key=list(ConsoleArea).index))


def check_area(user: Staff, area: ConsoleArea) -> Staff:
    """``user`` if the area is theirs, or Forbidden."""
    if area not in console_areas(user):
        raise Forbidden(f"staff user {user.username} may not open the console's {area.value}")
    return user


def area_user(area: ConsoleArea) -> Callable[[Request], Staff]:
    """A FastAPI dependency: a staff user who may open ``area`` of the console."""
    def dependency(request: Request) -> Staff:
        return check_area(staff_of(request), area)
    return dependency


def staff_user(request: Request) -> Staff:
    """A FastAPI dependency: any active staff user; being logged in is the whole right."""
    return staff_of(request)


def admin_user(request: Request) -> Admin:
    """A FastAPI dependency: a staff user with the admin right (Forbidden without it)."""
    return check_admin(staff_of(request))


# --- shared mailboxes and tickets ------------------------------------------------------------
# Membership is the whole right to a mailbox and its tickets, whatever the global roles: an
# admin sees no mailbox they are not a member of. An id the user may not reach is answered
# exactly as an id that does not exist (404), so ids of other teams cannot be probed.


@dataclass(frozen=True)
class MailboxAccess:
    mailbox_id: int
    role: MemberRole


@dataclass(frozen=True)
class TicketAccess:
    ticket_id: int
    mailbox_id: int
    role: MemberRole


def not_found() -> HTTPException:
    return HTTPException(404)


def check_mailbox(session: Session, user: Staff, mailbox_id: int) -> MailboxAccess:
    """The user's role in the mailbox, or 404 for a mailbox they are no member of."""
    role = role_in(session, user.user_id, mailbox_id)
    if role is None:
        raise not_found()
    return MailboxAccess(mailbox_id, role)


def check_ticket(session: Session, user: Staff, ticket_id: int) -> TicketAccess:
    """The ticket's mailbox and the user's role there, or 404 for a ticket of a mailbox they
    are no member of (or none at all)."""
    mailbox_id = session.scalar(select(Ticket.mailbox_id).where(Ticket.id == ticket_id))
    if mailbox_id is None:
        raise not_found()
    access = check_mailbox(session, user, mailbox_id)
    return TicketAccess(ticket_id, access.mailbox_id, access.role)


# --- background tasks of the console (issue 16) -----------------------------------------------
# A task (a re-scan, a chain verification) may be seen by whoever started it and by admins;
# for anyone else its id answers like an id that does not exist.


def check_task(user: Staff, task: TaskView | None) -> TaskView:
    """The task if ``user`` may see it, or 404 (also for a task that does not exist)."""
    if task is None or (task.started_by != user.username and GlobalRole.ADMIN not in user.roles):
        raise not_found()
    return task


# --- the consent register in the console (issue 16) -------------------------------------------
# Leads and agents manage consent for their own mailboxes' cases: a release belongs to the
# mailbox it was recorded in (gateway.consent.models.ConsentRelease.mailbox_id), a held report
# to the mailbox it was sent from (gateway.consent.teams). Admins see every release and report,
# also those of no mailbox. Whether the area opens at all (403 for the auditor and the DPO) is
# console_areas above; every consent page asks consent_scope below for everything else, and an
# id out of scope answers 404 like one that does not exist.


@dataclass(frozen=True)
class ConsentScope:
    """The mailboxes whose releases and held reports a user manages; None: all (an admin)."""

    mailbox_ids: frozenset[int] | None

    @property
    def everything(self) -> bool:
        return self.mailbox_ids is None

    def covers(self, mailbox_ids: Collection[int | None]) -> bool:
        """Is something that belongs to ``mailbox_ids`` (empty or None: to no mailbox) in
        reach?"""
        if self.mailbox_ids is None:
            return True
        return any(box in self.mailbox_ids for box in mailbox_ids if box is not None)


def consent_scope(session: Session, user: Staff) -> ConsentScope:
    """The one rule of the consent register: which mailboxes' consent ``user`` manages."""
    check_area(user, ConsoleArea.CONSENT)
    if GlobalRole.ADMIN in user.roles:
        return ConsentScope(None)
    boxes = session.scalars(select(MailboxMember.mailbox_id).where(
        MailboxMember.user_id == user.user_id,
        MailboxMember.role.in_([MemberRole.LEAD.value, MemberRole.AGENT.value]))).all()
    return ConsentScope(frozenset(boxes))


def check_release(session: Session, user: Staff, release_id: int) -> ConsentScope:
    """The user's scope if the release is in it, or 404 (also for no such release)."""
    scope = consent_scope(session, user)
    try:
        mailbox_id = release_mailbox(session, release_id)
    except ConsentNotFound:
        raise not_found() from None
    if not scope.covers([mailbox_id]):
        raise not_found()
    return scope


def check_held(session: Session, user: Staff, queue_id: str) -> ConsentScope:
    """The user's scope if the held report ``queue_id`` is in it, or 404. (Whether it is
    still held, the library says when it acts on it.)"""
    scope = consent_scope(session, user)
    if not scope.everything and not scope.covers(
            report_mailboxes(session, [queue_id]).get(queue_id, frozenset())):
        raise not_found()
    return scope


def held_in_scope(session: Session, scope: ConsentScope,
                  reports: Sequence[HeldReport]) -> list[HeldReport]:
    """The held reports of ``reports`` that belong to a mailbox in ``scope``."""
    if scope.everything:
        return list(reports)
    boxes = report_mailboxes(session, [r.queue_id for r in reports])
    return [r for r in reports if scope.covers(boxes.get(r.queue_id, frozenset()))]


def check_recording_mailbox(scope: ConsentScope, mailbox_id: int | None) -> None:
    """May a release be recorded in ``mailbox_id`` (None: in no mailbox)? An admin may
    record anywhere, or without a mailbox (as ``xgate consent add`` does); everyone else only
    in a mailbox whose consent they manage. ConsentError (``mailbox_missing``) otherwise."""
    if scope.mailbox_ids is None:
        return
    if mailbox_id is None or mailbox_id not in scope.mailbox_ids:
        raise ConsentError("choose a shared mailbox whose consent you manage",
                           key="mailbox_missing")


# --- forgetting audit months in the console (issue 16) -----------------------------------------
# The audit area is a read area (admins, auditors, DPO); destroying the keys of past months
# changes the trail for good, so only admins may (as with ``xgate audit forget`` on the host).
def check_audit_forget(user: Staff) -> Admin:
    """``user`` as an admin who may forget audit months, or Forbidden."""
    return check_admin(user)


def may_forget_audit(user: Staff) -> bool:
    """Whether the audit page offers ``user`` the forget form (the same check as the POST)."""
    try:
        check_audit_forget(user)
    except Forbidden:
        return False
    return True


# --- retrying a transfer from the console (issue 16) --------------------------------------------
# The transfers area is a read area (admins, auditors, DPO); sending a message back to the
# workers changes the queue, so only admins may (as with ``xgate queue retry`` on the host).
def check_transfer_retry(user: Staff) -> Admin:
    """``user`` as an admin who may retry a transfer, or Forbidden."""
    return check_admin(check_area(user, ConsoleArea.TRANSFERS))


def may_retry_transfers(user: Staff) -> bool:
    """Whether the timeline offers ``user`` the retry form (the same check as the POST)."""
    try:
        check_transfer_retry(user)
    except Forbidden:
        return False
    return True
