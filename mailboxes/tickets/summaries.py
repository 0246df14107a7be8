"""What the staff pages show beside the ticket list: each of a user's mailboxes with its
counts of new and open tickets, and how each listed ticket's first message came in
(encryption, signature, signer) from its queue message's facts. One statement each, however
many mailboxes or tickets are shown."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.models import Message
from mailboxes.members import mailboxes_of
from mailboxes.models import Mailbox, MemberRole, StoredMessage
from mailboxes.tickets.models import Article, ArticleKind, Ticket, TicketState


@dataclass(frozen=True)
class MailboxInfo:
    """What a page shows of a mailbox, readable after the transaction ended."""

    id: int
    address: str
    name: str


def mailbox_info(session: Session, mailbox_id: int) -> MailboxInfo:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise LookupError(f"no mailbox {mailbox_id}")
    return MailboxInfo(mailbox.id, mailbox.address, mailbox.name)


@dataclass(frozen=True)
class MailboxSummary:
    id: int
    address: str
    name: str
    role: MemberRole
    new: int
    open: int


def my_mailboxes(session: Session, user_id: int) -> list[MailboxSummary]:
    boxes = mailboxes_of(session, user_id)
    if not boxes:
        return []
    counts: dict[tuple[int, str], int] = {
        (box, state): n for box, state, n in session.execute(
            select(Ticket.mailbox_id, Ticket.state, func.count())
            .where(Ticket.mailbox_id.in_([m.id for m, _ in boxes]),
                   Ticket.state.in_([TicketState.NEW.value, TicketState.OPEN.value]))
            .group_by(Ticket.mailbox_id, Ticket.state))}
    return [MailboxSummary(m.id, m.address, m.name, role,
                           counts.get((m.id, TicketState.NEW.value), 0),
                           counts.get((m.id, TicketState.OPEN.value), 0))
            for m, role in boxes]


@dataclass(frozen=True)
class Protection:
    """How a message came in: ``encryption`` "smime", "openpgp" or "none"; ``signature``
    "valid", "invalid" or "none"; ``signer`` the signing key's or certificate's address.
    ``known`` is False when the queue message (and its facts) is gone."""

    known: bool
    encryption: str = "none"
    signature: str = "none"
    signer: str | None = None


UNKNOWN = Protection(known=False)


def protection_from_facts(facts: dict[str, object] | None) -> Protection:
    if facts is None:
        return UNKNOWN
    signer = facts.get("signer")
    return Protection(True, str(facts.get("encryption") or "none"),
                      str(facts.get("signature") or "none"),
                      None if signer is None else str(signer))


def first_protection(session: Session, ticket_ids: list[int]) -> dict[int, Protection]:
    """The protection of each ticket's first message in (tickets without one: UNKNOWN)."""
    if not ticket_ids:
        return {}
    first = (select(Article.ticket_id, func.min(Article.id).label("article_id"))
             .where(Article.ticket_id.in_(ticket_ids),
                    Article.kind == ArticleKind.INBOUND.value)
             .group_by(Article.ticket_id).subquery())
    rows = session.execute(
        select(first.c.ticket_id, Message.facts, Message.id)
        .join(Article, Article.id == first.c.article_id)
        .outerjoin(StoredMessage, StoredMessage.id == Article.stored_message_id)
        .outerjoin(Message, Message.id == StoredMessage.message_id))
    found: dict[int, Protection] = {}
    for ticket_id, facts, message_id in rows:
        if message_id is None:
            found[ticket_id] = UNKNOWN
        else:
            found[ticket_id] = protection_from_facts(json.loads(facts) if facts else {})
    return found
