"""Opening all of a ticket's articles at once, for the ticket page: the same audited read as
mailboxes.tickets.reads.open_article (one audit entry per article: who, which ticket, which
article, which part), in a fixed number of statements however many articles the ticket has.
Content is returned in memory only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed
from gateway import audit
from gateway.audit import AuditAction, Event
from gateway.models import Message, SealedContent
from gateway.queue.spool import content_context
from mailboxes.models import StoredMessage
from mailboxes.store import read_message
from mailboxes.tickets.models import Article, ArticleKind, Ticket
from mailboxes.tickets.records import note_context


def open_articles(session: Session, master: MasterKey, *, ticket_id: int,
                  actor: str) -> dict[int, bytes]:
    """Every article's content by article id (a message as MIME, a note as UTF-8 text);
    an article whose content is no longer stored is left out."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return {}
    articles = list(session.scalars(select(Article).where(Article.ticket_id == ticket_id)
                                    .order_by(Article.id)))
    stored_ids = [a.stored_message_id for a in articles if a.stored_message_id is not None]
    stored = {s.id: s for s in session.scalars(
        select(StoredMessage).where(StoredMessage.id.in_(stored_ids)))} if stored_ids else {}
    queue_ids = [a.queue_id for a in articles if a.queue_id is not None]
    sealed: dict[str, bytes] = {qid: blob for qid, blob in session.execute(
        select(Message.queue_id, SealedContent.sealed)
        .join(SealedContent, SealedContent.message_id == Message.id)
        .where(Message.queue_id.in_(queue_ids)))} if queue_ids else {}
    found: dict[int, bytes] = {}
    events: list[Event] = []
    for article in articles:
        content: bytes | None = None
        if article.kind == ArticleKind.NOTE.value:
            if article.note_sealed is not None:
                content = open_sealed(master, article.note_sealed,
                                      note_context(ticket.number, article.id))
        elif article.stored_message_id in stored:
            content = read_message(master, stored[article.stored_message_id])
        elif article.queue_id is not None and article.queue_id in sealed:
            content = open_sealed(master, sealed[article.queue_id],
                                  content_context(article.queue_id))
        if content is None:
            continue
        found[article.id] = content
        events.append(Event(actor, AuditAction.TICKET_CONTENT_READ, article.queue_id, {
            "ticket": ticket.number, "article": article.id, "kind": article.kind,
            "part": "note" if article.kind == ArticleKind.NOTE.value else "message"}))
    audit.record_many(session, events)
    return found
