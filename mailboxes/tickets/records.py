"""Creating tickets and changing them: state, assignee, notes. Each change writes a history
row in the caller's transaction; the caller (worker unit, request, CLI command) commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway.db import table_of
from gateway.models import StaffUser
from mailboxes.members import role_in
from mailboxes.tickets import history
from mailboxes.tickets.models import (
    Article,
    ArticleKind,
    SubjectToken,
    Ticket,
    TicketState,
)
from mailboxes.tickets.numbers import allocate_number
from mailboxes.tickets.search import index_key, tokens
from mailboxes.tickets.states import TicketError, check_transition

MAX_SUBJECT = 998
MAX_NOTE = 20_000

_tickets = table_of(Ticket)
_articles = table_of(Article)
_INSERT_TICKET = insert(_tickets).returning(_tickets.c.id)
_INSERT_ARTICLE = insert(_articles).returning(_articles.c.id)
_INSERT_TOKENS = insert(table_of(SubjectToken))
_TOUCH = update(_tickets).where(_tickets.c.id == bindparam("tid")).values(
    updated_at=bindparam("now"))


def subject_context(number: str) -> bytes:
    return b"ticket-subject:" + number.encode()


def note_context(number: str, article_id: int) -> bytes:
    return f"ticket-note:{number}:{article_id}".encode()


def open_subject(master: MasterKey, number: str, sealed: bytes) -> str:
    return open_sealed(master, sealed, subject_context(number)).decode("utf-8")


def create_ticket(session: Session, master: MasterKey, *, mailbox_id: int, requester: str,
                  subject: str, actor: str, now: datetime,
                  linked_ticket_id: int | None = None) -> tuple[int, str]:
    """A new ticket; its id and number."""
    ticket_id, number, created = open_ticket(
        session, master, mailbox_id=mailbox_id, requester=requester, subject=subject,
        actor=actor, now=now, linked_ticket_id=linked_ticket_id)
    history.record_all(session, [created])
    return ticket_id, number


def open_ticket(session: Session, master: MasterKey, *, mailbox_id: int, requester: str,
                subject: str, actor: str, now: datetime,
                linked_ticket_id: int | None = None) -> tuple[int, str, history.HistoryRow]:
    """``create_ticket`` with its history row ("created") returned for the caller to write
    together with the rows that follow it (filing writes them in one statement)."""
    number = allocate_number(session, now.year)
    subject = " ".join(subject.split())[:MAX_SUBJECT]
    ticket_id = int(session.execute(_INSERT_TICKET, {
        "mailbox_id": mailbox_id, "number": number, "state": TicketState.NEW.value,
        "assignee_id": None, "requester": requester.strip().lower()[:320],
        "subject_sealed": seal(master, subject.encode(), subject_context(number)),
        "linked_ticket_id": linked_ticket_id, "created_at": now, "updated_at": now,
    }).scalar_one())
    found = tokens(index_key(master), subject)
    if found:
        session.execute(_INSERT_TOKENS, [{"ticket_id": ticket_id, "token": t} for t in found])
    detail: dict[str, object] = {"number": number}
    if linked_ticket_id is not None:
        detail["linked_ticket_id"] = linked_ticket_id
    return ticket_id, number, history.entry(ticket_id, actor=actor, action="created", now=now,
                                            **detail)


def add_article(session: Session, ticket_id: int, kind: ArticleKind, *, author: str,
                now: datetime, stored_message_id: int | None = None,
                queue_id: str | None = None, rfc_message_id: str | None = None,
                touch: bool = True) -> int:
    """An article; the ticket's ``updated_at`` becomes ``now`` unless ``touch`` is False,
    which a caller passes for a ticket it created at this same ``now`` (the update would
    write the value the row has)."""
    article_id = int(session.execute(_INSERT_ARTICLE, {
        "ticket_id": ticket_id, "kind": kind.value, "created_at": now, "author": author[:320],
        "stored_message_id": stored_message_id, "queue_id": queue_id,
        "rfc_message_id": (rfc_message_id or None) and rfc_message_id[:255],
        "note_sealed": None}).scalar_one())
    if touch:
        session.execute(_TOUCH, {"tid": ticket_id, "now": now})
    return article_id


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketError(f"no ticket {ticket_id}")
    return ticket


def find_ticket(session: Session, number: str) -> Ticket:
    ticket = session.scalars(select(Ticket).where(Ticket.number == number.strip().upper())
                             ).one_or_none()
    if ticket is None:
        raise TicketError(f"no ticket {number.strip().upper()}")
    return ticket


def change_state(session: Session, ticket: Ticket, target: TicketState, *, actor: str,
                 now: datetime) -> None:
    history.record_all(session, [moved(session, ticket, target, actor=actor, now=now)])


def moved(session: Session, ticket: Ticket, target: TicketState, *, actor: str,
          now: datetime) -> history.HistoryRow:
    """``change_state`` with its history row returned for the caller to write (together
    with rows of its own); the ticket's ``updated_at`` becomes ``now``."""
    current = TicketState(ticket.state)
    check_transition(current, target)
    ticket.state = target.value
    ticket.updated_at = now
    session.flush()
    return history.entry(ticket.id, actor=actor, action="state", now=now,
                         **{"from": current.value, "to": target.value})


def follow(session: Session, ticket: Ticket, moves: dict[TicketState, TicketState], *,
           actor: str, now: datetime) -> None:
    """The automatic move a mail in or a reply out makes, if any."""
    target = moves.get(TicketState(ticket.state))
    if target is not None:
        change_state(session, ticket, target, actor=actor, now=now)


def assign(session: Session, ticket: Ticket, username: str | None, *, actor: str,
           now: datetime) -> None:
    """Give the ticket to a member of its mailbox (None: to nobody)."""
    user_id = None
    if username is not None:
        user_id = session.scalar(select(StaffUser.id).where(StaffUser.username == username))
        if user_id is None or role_in(session, user_id, ticket.mailbox_id) is None:
            raise TicketError(f"{username} is no member of this ticket's mailbox",
                              key="assignee", user=username)
    if user_id == ticket.assignee_id:
        return
    before = ticket.assignee_id
    ticket.assignee_id = user_id
    ticket.updated_at = now
    session.flush()
    history.record(session, ticket.id, actor=actor, action="assigned", now=now,
                   **{"from": before, "to": user_id, "to_user": username})


def add_note(session: Session, master: MasterKey, ticket: Ticket, text: str, *, actor: str,
             now: datetime) -> int:
    """An internal note, sealed; it never leaves the office."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise TicketError("a note must not be empty", key="note_empty")
    if len(text) > MAX_NOTE:
        raise TicketError(f"a note may have at most {MAX_NOTE} characters",
                          key="note_long", limit=MAX_NOTE)
    article_id = add_article(session, ticket.id, ArticleKind.NOTE, author=actor, now=now)
    session.execute(update(_articles).where(_articles.c.id == article_id).values(
        note_sealed=seal(master, text.encode(), note_context(ticket.number, article_id))))
    history.record(session, ticket.id, actor=actor, action="note", now=now,
                   article_id=article_id)
    return article_id
