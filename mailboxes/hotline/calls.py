"""Logging a call: a ticket of its own (channel phone, numbered like mail) or one more call
on a ticket the caller already has. Every check runs before the first write, and the caller
(request, CLI command) commits, so a refused call stores nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from mailboxes.hotline.models import Call, CallerRole
from mailboxes.hotline.phone import number_token, parse_number, parse_optional_number
from mailboxes.hotline.topics import check_topic
from mailboxes.models import Mailbox
from mailboxes.tickets import history
from mailboxes.tickets.models import Channel, SubjectToken, Ticket, TicketState
from mailboxes.tickets.records import (
    MAX_NOTE,
    add_note,
    create_ticket,
    follow,
    get_ticket,
    open_subject,
)
from mailboxes.tickets.search import index_key, tokens
from mailboxes.tickets.states import ON_MAIL_IN, TicketError

MAX_CALLER = 200
MAX_CASE_REF = 64
MAX_MATCHES = 10

_calls = table_of(Call)
_INSERT_CALL = insert(_calls).returning(_calls.c.id)


@dataclass(frozen=True)
class CallForm:
    """A call as the agent typed it; ``checked`` turns it into clean values or refuses."""

    caller: str
    role: str
    number: str
    topic: str | None = None
    notes: str = ""
    case_ref: str | None = None
    callback_due: datetime | None = None


@dataclass(frozen=True)
class CheckedCall:
    caller: str
    role: CallerRole
    number: str
    topic: str | None
    notes: str
    case_ref: str | None
    callback_due: datetime | None


@dataclass(frozen=True)
class LoggedCall:
    call_id: int
    ticket_id: int
    number: str
    new_ticket: bool


@dataclass(frozen=True)
class CallDetails:
    name: str
    number: str
    case_ref: str | None


def parse_role(text: str) -> CallerRole:
    try:
        return CallerRole(text.strip().lower())
    except ValueError:
        raise TicketError(f"unknown caller role {text!r}: use "
                          + ", ".join(r.value for r in CallerRole), key="caller_role",
                          role=text) from None


def checked(session: Session, mailbox_id: int, form: CallForm, *, now: datetime
            ) -> CheckedCall:
    caller = " ".join(form.caller.split())
    if not caller:
        raise TicketError("the caller's name is needed", key="caller_missing")
    if len(caller) > MAX_CALLER:
        raise TicketError(f"a caller's name may have at most {MAX_CALLER} characters",
                          key="caller_long", limit=MAX_CALLER)
    role = parse_role(form.role)
    number = parse_optional_number(form.number)
    topic = check_topic(session, mailbox_id, form.topic)
    notes = form.notes.replace("\r\n", "\n").strip()
    if len(notes) > MAX_NOTE:
        raise TicketError(f"a note may have at most {MAX_NOTE} characters",
                          key="note_long", limit=MAX_NOTE)
    case_ref = " ".join((form.case_ref or "").split()) or None
    if case_ref is not None and len(case_ref) > MAX_CASE_REF:
        raise TicketError(f"a case reference may have at most {MAX_CASE_REF} characters",
                          key="case_ref_long", limit=MAX_CASE_REF)
    if form.callback_due is not None and form.callback_due <= now:
        raise TicketError("a callback cannot be due in the past", key="callback_past")
    return CheckedCall(caller, role, number, topic, notes, case_ref, form.callback_due)


def call_context(call_id: int) -> bytes:
    return f"hotline-call:{call_id}".encode()


def open_details(master: MasterKey, call_id: int, sealed: bytes) -> CallDetails:
    data = json.loads(open_sealed(master, sealed, call_context(call_id)))
    return CallDetails(str(data["name"]), str(data["number"]), data.get("case_ref"))


def log_call(session: Session, master: MasterKey, mailbox: Mailbox, form: CallForm, *,
             actor: str, now: datetime, attach_to: int | None = None) -> LoggedCall:
    """Log a call; with ``attach_to`` on that (open) ticket of the mailbox, else on a new one."""
    call = checked(session, mailbox.id, form, now=now)
    if attach_to is not None:
        ticket = get_ticket(session, attach_to)
        if ticket.mailbox_id != mailbox.id:
            raise TicketError(f"no ticket {attach_to}")
        if ticket.state == TicketState.CLOSED.value or ticket.merged_into_id is not None:
            raise TicketError(f"{ticket.number} is closed: log the call as a new ticket",
                              key="attach_closed", ticket=ticket.number)
        ticket_id, number, new = ticket.id, ticket.number, False
    else:
        subject = f"Anruf: {call.caller}" + (f" - {call.topic}" if call.topic else "")
        ticket_id, number = create_ticket(session, master, mailbox_id=mailbox.id,
                                          requester="", subject=subject, actor=actor, now=now)
        session.execute(update(table_of(Ticket)).where(table_of(Ticket).c.id == ticket_id)
                        .values(channel=Channel.PHONE.value))
        ticket, new = get_ticket(session, ticket_id), True
        session.refresh(ticket)
    call_id = int(session.execute(_INSERT_CALL, {
        "ticket_id": ticket_id, "taken_at": now, "taken_by": actor[:320],
        "caller_role": call.role.value, "topic": call.topic, "details_sealed": b"",
        # No number: an empty token, which the plausibility checks read as "nobody to call".
        "number_token": number_token(master, call.number) if call.number else b"",
        "callback_due_at": call.callback_due, "callback_done_at": None}).scalar_one())
    details = json.dumps({"name": call.caller, "number": call.number,
                          "case_ref": call.case_ref}, ensure_ascii=False).encode()
    session.execute(update(_calls).where(_calls.c.id == call_id).values(
        details_sealed=seal(master, details, call_context(call_id))))
    if not new:
        # The caller's name is searchable on the ticket they called about, too.
        _index_caller(session, master, ticket_id, call.caller)
    history.record(session, ticket_id, actor=actor, action="call", now=now, call_id=call_id,
                   role=call.role.value, topic=call.topic,
                   callback_due=call.callback_due.isoformat() if call.callback_due else None)
    if call.notes:
        add_note(session, master, ticket, call.notes, actor=actor, now=now)
    if not new:
        follow(session, ticket, ON_MAIL_IN, actor=actor, now=now)
    audit.record(session, actor=actor, action=AuditAction.CALL_LOGGED, detail={
        "mailbox": mailbox.address, "ticket": number, "call_id": call_id,
        "new_ticket": new, "callback": call.callback_due is not None})
    return LoggedCall(call_id, ticket_id, number, new)


def _index_caller(session: Session, master: MasterKey, ticket_id: int, caller: str) -> None:
    have = set(session.scalars(select(SubjectToken.token)
                               .where(SubjectToken.ticket_id == ticket_id)))
    fresh = [t for t in tokens(index_key(master), caller) if t not in have]
    if fresh:
        session.execute(insert(table_of(SubjectToken)),
                        [{"ticket_id": ticket_id, "token": t} for t in fresh])


@dataclass(frozen=True)
class Match:
    ticket_id: int
    number: str
    state: TicketState
    subject: str
    channel: str


def open_tickets_of(session: Session, master: MasterKey, mailbox_id: int, *,
                    number: str | None = None, caller: str | None = None) -> list[Match]:
    """Open tickets of the mailbox this caller may be calling about again: a call from the
    same number, or every word of their name in a subject (blind index). One statement."""
    found: list[ColumnElement[bool]] = []
    if number and number.strip():
        try:
            token = number_token(master, parse_number(number))
        except TicketError:
            token = None
        if token is not None:
            found.append(Ticket.id.in_(select(Call.ticket_id).where(Call.number_token == token)))
    words = tokens(index_key(master), caller or "")
    if words:
        found.append(and_(*[Ticket.id.in_(select(SubjectToken.ticket_id)
                                          .where(SubjectToken.token == t)) for t in words]))
    if not found:
        return []
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.state, Ticket.subject_sealed, Ticket.channel)
        .where(Ticket.mailbox_id == mailbox_id, Ticket.state != TicketState.CLOSED.value,
               Ticket.merged_into_id.is_(None), or_(*found))
        .order_by(Ticket.id.desc()).limit(MAX_MATCHES))
    return [Match(tid, num, TicketState(state), open_subject(master, num, sealed), channel)
            for tid, num, state, sealed, channel in rows]


def record_reads(session: Session, *, actor: str, shown: list[tuple[str, int]]) -> None:
    """The callers' details (name, number, case reference) were shown to ``actor``: one
    content read per call (ticket number, call id) in the audit trail, as for messages."""
    audit.record_many(session, [
        audit.Event(actor, AuditAction.TICKET_CONTENT_READ, None,
                    {"ticket": number, "call": call_id, "part": "call"})
        for number, call_id in shown])
