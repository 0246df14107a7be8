"""Follow-ups (Wiedervorlage): a date and a note on a ticket, mail or phone. On that day
(the office's day, mailboxes.hotline.days) the ticket comes back to its holder: the
follow-ups view lists it, the ticket list marks it, the morning digest names it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.models import StaffUser
from mailboxes.hotline.days import office_day
from mailboxes.hotline.models import FollowUp
from mailboxes.models import Mailbox, MailboxMember
from mailboxes.tickets import history
from mailboxes.tickets.models import Ticket
from mailboxes.tickets.records import open_subject
from mailboxes.tickets.states import TicketError

MAX_FOLLOW_UP_NOTE = 2000
MAX_LIST = 500


def note_context(number: str) -> bytes:
    return f"ticket-follow-up:{number}".encode()


def holder_column() -> ColumnElement[int | None]:
    """Who a follow-up comes back to: whoever holds the ticket now (so a reassigned ticket
    takes its follow-up along), or, on an unassigned ticket, who it was set for."""
    return func.coalesce(Ticket.assignee_id, FollowUp.holder_id)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TicketError(f"{text.strip()!r} is no date: use YYYY-MM-DD",
                          key="follow_up_date", value=text.strip()) from None


@dataclass(frozen=True)
class FollowUpView:
    due_on: date
    holder: str | None
    note: str | None
    set_by: str
    set_at: datetime
    due: bool


def _mailbox_address(session: Session, ticket: Ticket) -> str | None:
    mailbox = session.get(Mailbox, ticket.mailbox_id)
    return None if mailbox is None else mailbox.address


def set_follow_up(session: Session, master: MasterKey, ticket: Ticket, due_on: date,
                  note: str = "", *, actor: str, actor_id: int | None, now: datetime) -> None:
    """Set (or move) the ticket's follow-up. Its holder is whoever holds the ticket, or the
    one setting it if nobody does."""
    note = note.replace("\r\n", "\n").strip()
    if due_on < office_day(now):
        raise TicketError(f"a follow-up cannot be set to a day in the past ({due_on})",
                          key="follow_up_past", day=due_on.isoformat())
    if len(note) > MAX_FOLLOW_UP_NOTE:
        raise TicketError(f"a note may have at most {MAX_FOLLOW_UP_NOTE} characters",
                          key="note_long", limit=MAX_FOLLOW_UP_NOTE)
    holder_id = ticket.assignee_id if ticket.assignee_id is not None else actor_id
    session.execute(delete(FollowUp).where(FollowUp.ticket_id == ticket.id))
    session.add(FollowUp(ticket_id=ticket.id, due_on=due_on, holder_id=holder_id,
                         note_sealed=seal(master, note.encode(), note_context(ticket.number))
                         if note else None, set_by=actor[:320], set_at=now))
    session.flush()
    history.record(session, ticket.id, actor=actor, action="follow-up", now=now,
                   due_on=due_on.isoformat(), holder_id=holder_id)
    audit.record(session, actor=actor, action=AuditAction.FOLLOW_UP_SET, detail={
        "mailbox": _mailbox_address(session, ticket), "ticket": ticket.number,
        "due_on": due_on.isoformat()})


def clear_follow_up(session: Session, ticket: Ticket, *, actor: str, now: datetime) -> bool:
    """Done with it (or no longer wanted); False if the ticket had none."""
    removed = session.execute(delete(FollowUp).where(FollowUp.ticket_id == ticket.id)
                              ).rowcount  # type: ignore[attr-defined]
    if not removed:
        return False
    history.record(session, ticket.id, actor=actor, action="follow-up-done", now=now)
    audit.record(session, actor=actor, action=AuditAction.FOLLOW_UP_CLEARED, detail={
        "mailbox": _mailbox_address(session, ticket), "ticket": ticket.number})
    return True


def follow_up_of(session: Session, master: MasterKey, ticket: Ticket, *, now: datetime
                 ) -> FollowUpView | None:
    row = session.execute(
        select(FollowUp.due_on, StaffUser.username, FollowUp.note_sealed, FollowUp.set_by,
               FollowUp.set_at)
        .select_from(FollowUp).join(Ticket, Ticket.id == FollowUp.ticket_id)
        .outerjoin(StaffUser, StaffUser.id == holder_column())
        .where(FollowUp.ticket_id == ticket.id)).first()
    if row is None:
        return None
    due_on, holder, sealed, set_by, set_at = row
    note = None if sealed is None else open_sealed(
        master, sealed, note_context(ticket.number)).decode("utf-8")
    return FollowUpView(due_on, holder, note, set_by, set_at, due_on <= office_day(now))


@dataclass(frozen=True)
class DueFollowUp:
    ticket_id: int
    number: str
    mailbox_id: int
    mailbox: str
    subject: str | None
    due_on: date
    holder: str | None
    note: str | None


def due_follow_ups(session: Session, master: MasterKey | None, *, today: date,
                   holder_id: int | None = None, mailbox_id: int | None = None,
                   limit: int = MAX_LIST) -> list[DueFollowUp]:
    """Follow-ups due by ``today``, oldest first: a holder's (in mailboxes they are still a
    member of) or a mailbox's. One statement; without a master key no content is opened
    (the digest names tickets by number only)."""
    query = (select(Ticket.id, Ticket.number, Ticket.mailbox_id, Mailbox.address,
                    Ticket.subject_sealed, FollowUp.due_on, StaffUser.username,
                    FollowUp.note_sealed)
             .join(Ticket, Ticket.id == FollowUp.ticket_id)
             .join(Mailbox, Mailbox.id == Ticket.mailbox_id)
             .outerjoin(StaffUser, StaffUser.id == holder_column())
             .where(FollowUp.due_on <= today))
    if holder_id is not None:
        query = query.where(holder_column() == holder_id).join(
            MailboxMember, (MailboxMember.mailbox_id == Ticket.mailbox_id)
            & (MailboxMember.user_id == holder_id))
    if mailbox_id is not None:
        query = query.where(Ticket.mailbox_id == mailbox_id)
    found = []
    for tid, number, box, address, subject, due_on, holder, note in session.execute(
            query.order_by(FollowUp.due_on, Ticket.id).limit(limit)):
        found.append(DueFollowUp(
            tid, number, box, address,
            None if master is None else open_subject(master, number, subject),
            due_on, holder,
            None if master is None or note is None else open_sealed(
                master, note, note_context(number)).decode("utf-8")))
    return found


def due_marks(session: Session, ticket_ids: Collection[int], *, today: date) -> set[int]:
    """Which of these tickets (a list page's) have a follow-up due: one statement."""
    if not ticket_ids:
        return set()
    return set(session.scalars(select(FollowUp.ticket_id).where(
        FollowUp.ticket_id.in_(list(ticket_ids)), FollowUp.due_on <= today)))
