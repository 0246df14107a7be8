"""Reading tickets for the list and the ticket page: a constant number of statements per
page, whatever the number of tickets shown (subjects are opened in memory, not per row).

The list is paged by keyset on the ticket id, newest first: ``before`` is the last id of
the previous page, so a page costs the same at ticket 100 as at ticket 100,000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from crypto.at_rest import MasterKey
from gateway.models import Message, MessageState, StaffUser
from mailboxes.models import StoredMessage
from mailboxes.tickets.models import Article, HistoryEntry, SubjectToken, Ticket, TicketState
from mailboxes.tickets.records import open_subject
from mailboxes.tickets.search import index_key, tokens
from mailboxes.tickets.states import TicketError

MAX_PAGE = 200


@dataclass(frozen=True)
class TicketFilter:
    state: TicketState | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    # Whole words of the subject (all must occur), or a part of the sender's address.
    search: str | None = None


@dataclass(frozen=True)
class TicketRow:
    id: int
    mailbox_id: int
    number: str
    state: TicketState
    requester: str
    subject: str
    assignee: str | None
    linked_to: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    rows: list[TicketRow]
    # Pass as ``before`` for the next page; None on the last page.
    next_before: int | None


_linked = aliased(Ticket)


def _ticket_select() -> Select[*tuple[Any, ...]]:
    return (select(Ticket.id, Ticket.mailbox_id, Ticket.number, Ticket.state,
                   Ticket.requester, Ticket.subject_sealed, StaffUser.username,
                   _linked.number, Ticket.created_at, Ticket.updated_at)
            .outerjoin(StaffUser, StaffUser.id == Ticket.assignee_id)
            .outerjoin(_linked, _linked.id == Ticket.linked_ticket_id))


def _row(master: MasterKey, r: tuple[object, ...]) -> TicketRow:
    (tid, box, number, state, requester, sealed, assignee, linked, created, updated) = r
    assert isinstance(number, str) and isinstance(sealed, bytes)
    return TicketRow(int(tid), int(box), number, TicketState(str(state)),  # type: ignore[call-overload]
                     str(requester), open_subject(master, number, sealed),
                     None if assignee is None else str(assignee),
                     None if linked is None else str(linked),
                     created, updated)  # type: ignore[arg-type]


def list_tickets(session: Session, master: MasterKey, mailbox_id: int,
                 filters: TicketFilter = TicketFilter(), *, before: int | None = None,
                 limit: int = 50) -> Page:
    """One page of a mailbox's tickets, newest first: one SQL statement."""
    limit = max(1, min(limit, MAX_PAGE))
    query = _ticket_select().where(Ticket.mailbox_id == mailbox_id)
    if filters.state is not None:
        query = query.where(Ticket.state == filters.state.value)
    if filters.unassigned:
        query = query.where(Ticket.assignee_id.is_(None))
    elif filters.assignee_id is not None:
        query = query.where(Ticket.assignee_id == filters.assignee_id)
    if filters.search and filters.search.strip():
        query = query.where(_search(master, filters.search.strip()))
    if before is not None:
        query = query.where(Ticket.id < before)
    rows = list(session.execute(query.order_by(Ticket.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    page = [_row(master, tuple(r)) for r in rows[:limit]]
    return Page(page, page[-1].id if more and page else None)


def _search(master: MasterKey, text: str) -> ColumnElement[bool]:
    """Every whole word of ``text`` in the subject (by its blind-index token), or ``text``
    as a part of the sender's address."""
    wanted = tokens(index_key(master), text)
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    by_sender = Ticket.requester.like(f"%{escaped}%", escape="\\")
    if not wanted:
        return by_sender
    # ``IN`` a token's tickets: the planner can start from the token index, so a rare word
    # costs its matches, not a walk over every ticket of the mailbox.
    return or_(by_sender, and_(*[
        Ticket.id.in_(select(SubjectToken.ticket_id).where(SubjectToken.token == t))
        for t in wanted]))


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    actor: str
    action: str
    detail: dict[str, object]


@dataclass(frozen=True)
class ArticleRow:
    id: int
    kind: str
    created_at: datetime
    author: str
    queue_id: str | None
    stored_message_id: int | None
    # The outbound queue message's outcome (replies, receipts) or how a message came in:
    # the queue state ("delivered", "held", ...), its reason, and its facts (crypto).
    queue_state: str | None
    reason: str | None
    facts: dict[str, object]

    @property
    def outcome(self) -> str | None:
        """A reply's outcome in words the page shows: sent, held, quarantined, bounced,
        failed, or pending while the queue works on it; None for mail in and notes."""
        if self.kind not in ("reply", "receipt"):
            return None
        if self.queue_state is None:
            return "unknown"
        return _OUTCOME.get(self.queue_state, "pending")


_OUTCOME = {MessageState.DELIVERED.value: "sent", MessageState.HELD.value: "held",
            MessageState.QUARANTINED.value: "quarantined",
            MessageState.REJECTED.value: "bounced", MessageState.FAILED.value: "failed"}


@dataclass(frozen=True)
class TicketView:
    ticket: TicketRow
    history: list[HistoryRow]
    articles: list[ArticleRow]


def ticket_view(session: Session, master: MasterKey, ticket_id: int) -> TicketView:
    """A ticket with its history and its articles' metadata: three statements."""
    found = session.execute(_ticket_select().where(Ticket.id == ticket_id)).first()
    if found is None:
        raise TicketError(f"no ticket {ticket_id}")
    ticket = _row(master, tuple(found))
    history = [HistoryRow(at, actor, action, json.loads(detail) if detail else {})
               for at, actor, action, detail in session.execute(
                   select(HistoryEntry.at, HistoryEntry.actor, HistoryEntry.action,
                          HistoryEntry.detail)
                   .where(HistoryEntry.ticket_id == ticket_id).order_by(HistoryEntry.id))]
    queue_id = func.coalesce(Article.queue_id, StoredMessage.queue_id)
    articles = [
        ArticleRow(aid, kind, created, author, qid, stored, str(state) if state else None,
                   reason, json.loads(facts) if facts else {})
        for aid, kind, created, author, qid, stored, state, reason, facts in session.execute(
            select(Article.id, Article.kind, Article.created_at, Article.author, queue_id,
                   Article.stored_message_id, Message.state, Message.reason, Message.facts)
            .outerjoin(StoredMessage, StoredMessage.id == Article.stored_message_id)
            .outerjoin(Message, Message.queue_id == queue_id)
            .where(Article.ticket_id == ticket_id).order_by(Article.id))]
    return TicketView(ticket, history, articles)
