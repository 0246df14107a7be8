"""Callbacks: the calls that want one, soonest first, and the attempts to reach the caller.

Reached closes the callback; not reached keeps it due (at a new time if given). Each attempt
is a row of its own, a line in the ticket's history and an entry in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.models import StaffUser
from mailboxes.hotline.calls import open_details
from mailboxes.hotline.models import Call, CallbackAttempt
from mailboxes.models import Mailbox
from mailboxes.tickets import history
from mailboxes.tickets.models import Ticket
from mailboxes.tickets.states import TicketError

MAX_ATTEMPT_NOTE = 2000
MAX_LIST = 500


@dataclass(frozen=True)
class DueCallback:
    call_id: int
    ticket_id: int
    ticket_number: str
    due_at: datetime
    holder: str | None
    caller: str
    number: str
    role: str
    topic: str | None
    attempts: int


def callbacks_due(session: Session, master: MasterKey, mailbox_id: int, *,
                  holder_id: int | None = None, limit: int = MAX_LIST) -> list[DueCallback]:
    """The mailbox's open callbacks (only the holder's with ``holder_id``), by due time: one
    statement, the callers' details opened in memory."""
    attempts = (select(func.count(CallbackAttempt.id))
                .where(CallbackAttempt.call_id == Call.id).scalar_subquery())
    query = (select(Call.id, Call.ticket_id, Ticket.number, Call.callback_due_at,
                    StaffUser.username, Call.details_sealed, Call.caller_role, Call.topic,
                    attempts)
             .join(Ticket, Ticket.id == Call.ticket_id)
             .outerjoin(StaffUser, StaffUser.id == Ticket.assignee_id)
             .where(Ticket.mailbox_id == mailbox_id, Call.callback_due_at.is_not(None),
                    Call.callback_done_at.is_(None)))
    if holder_id is not None:
        query = query.where(Ticket.assignee_id == holder_id)
    rows = session.execute(query.order_by(Call.callback_due_at, Call.id).limit(limit))
    found = []
    for cid, tid, number, due, holder, sealed, role, topic, count in rows:
        details = open_details(master, cid, sealed)
        found.append(DueCallback(cid, tid, number, due, holder, details.name, details.number,
                                 role, topic, int(count)))
    return found


def attempt_context(call_id: int, attempt_id: int) -> bytes:
    return f"hotline-callback:{call_id}:{attempt_id}".encode()


@dataclass(frozen=True)
class AttemptRow:
    at: datetime
    actor: str
    reached: bool
    note: str | None


def attempts_of(session: Session, master: MasterKey, call_id: int) -> list[AttemptRow]:
    return [AttemptRow(at, actor, reached,
                       None if sealed is None else open_sealed(
                           master, sealed, attempt_context(call_id, aid)).decode("utf-8"))
            for aid, at, actor, reached, sealed in session.execute(
                select(CallbackAttempt.id, CallbackAttempt.at, CallbackAttempt.actor,
                       CallbackAttempt.reached, CallbackAttempt.note_sealed)
                .where(CallbackAttempt.call_id == call_id).order_by(CallbackAttempt.id))]


def attempts_of_calls(session: Session, master: MasterKey, call_ids: list[int]
                      ) -> dict[int, list[AttemptRow]]:
    """The attempts of several calls (a ticket page's), by call: one statement."""
    found: dict[int, list[AttemptRow]] = {cid: [] for cid in call_ids}
    for aid, cid, at, actor, reached, sealed in session.execute(
            select(CallbackAttempt.id, CallbackAttempt.call_id, CallbackAttempt.at,
                   CallbackAttempt.actor, CallbackAttempt.reached, CallbackAttempt.note_sealed)
            .where(CallbackAttempt.call_id.in_(call_ids)).order_by(CallbackAttempt.id)):
        found[cid].append(AttemptRow(at, actor, reached, None if sealed is None else open_sealed(
            master, sealed, attempt_context(cid, aid)).decode("utf-8")))
    return found


def get_call(session: Session, call_id: int) -> Call:
    call = session.get(Call, call_id)
    if call is None:
        raise TicketError(f"no call {call_id}")
    return call


def record_attempt(session: Session, master: MasterKey, call: Call, *, reached: bool,
                   note: str = "", new_due: datetime | None = None, actor: str,
                   now: datetime) -> int:
    """Log one attempt to call back; its id."""
    note = note.replace("\r\n", "\n").strip()
    if len(note) > MAX_ATTEMPT_NOTE:
        raise TicketError(f"a note may have at most {MAX_ATTEMPT_NOTE} characters",
                          key="note_long", limit=MAX_ATTEMPT_NOTE)
    if call.callback_due_at is None or call.callback_done_at is not None:
        raise TicketError("this call has no callback due", key="callback_none")
    if new_due is not None and (reached or new_due <= now):
        raise TicketError("a new callback time must lie in the future and only follows "
                          "an attempt that did not reach the caller", key="callback_past")
    attempt = CallbackAttempt(call_id=call.id, at=now, actor=actor[:320], reached=reached)
    session.add(attempt)
    session.flush()
    if note:
        attempt.note_sealed = seal(master, note.encode(), attempt_context(call.id, attempt.id))
    if reached:
        call.callback_done_at = now
    elif new_due is not None:
        call.callback_due_at = new_due
    session.flush()
    ticket = session.get(Ticket, call.ticket_id)
    assert ticket is not None  # the call's foreign key
    history.record(session, ticket.id, actor=actor, action="callback", now=now,
                   call_id=call.id, reached=reached,
                   new_due=new_due.isoformat() if new_due else None)
    mailbox = session.get(Mailbox, ticket.mailbox_id)
    audit.record(session, actor=actor, action=AuditAction.CALLBACK_ATTEMPTED, detail={
        "mailbox": mailbox.address if mailbox else None, "ticket": ticket.number,
        "call_id": call.id, "reached": reached})
    return attempt.id
