"""Opening a ticket's content for display or download: each read is in the audit trail
(who, which ticket, which article, which part), in the caller's transaction. Content is
returned in memory; nothing here writes it anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed
from gateway import audit
from gateway.audit import AuditAction
from gateway.models import Message, SealedContent
from gateway.queue.spool import content_context
from mailboxes.models import StoredMessage
from mailboxes.store import read_message
from mailboxes.tickets.models import Article, ArticleKind, Ticket
from mailboxes.tickets.records import note_context
from mailboxes.tickets.replies import safe_filename
from mailboxes.tickets.states import TicketError


@dataclass(frozen=True)
class ArticleContent:
    kind: ArticleKind
    # A message (in, reply, receipt): the whole MIME message; a note: its text as UTF-8.
    data: bytes


@dataclass(frozen=True)
class AttachmentContent:
    filename: str
    content_type: str
    data: bytes


def open_article(session: Session, master: MasterKey, *, ticket_id: int, article_id: int,
                 actor: str) -> ArticleContent:
    ticket, article = _article(session, ticket_id, article_id)
    content = ArticleContent(ArticleKind(article.kind), _content(session, master, ticket,
                                                                 article))
    _audit(session, actor, ticket, article, "message" if article.kind != "note" else "note")
    return content


def attachments_of(data: bytes) -> list[EmailMessage]:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return list(message.iter_attachments())


def open_attachment(session: Session, master: MasterKey, *, ticket_id: int, article_id: int,
                    index: int, actor: str) -> AttachmentContent:
    """The ``index``-th attachment (from 0) of a message article."""
    ticket, article = _article(session, ticket_id, article_id)
    if article.kind == ArticleKind.NOTE.value:
        raise TicketError("a note has no attachments")
    parts = attachments_of(_content(session, master, ticket, article))
    if not 0 <= index < len(parts):
        raise TicketError(f"article {article_id} has no attachment {index}")
    part = parts[index]
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    found = AttachmentContent(safe_filename(part.get_filename() or ""),
                              part.get_content_type(), data)
    _audit(session, actor, ticket, article, f"attachment {index}")
    return found


def _article(session: Session, ticket_id: int, article_id: int) -> tuple[Ticket, Article]:
    ticket = session.get(Ticket, ticket_id)
    article = session.get(Article, article_id)
    # One error for both: an id of another ticket says nothing about that ticket.
    if ticket is None or article is None or article.ticket_id != ticket.id:
        raise TicketError(f"ticket {ticket_id} has no article {article_id}")
    return ticket, article


def _content(session: Session, master: MasterKey, ticket: Ticket, article: Article) -> bytes:
    if article.kind == ArticleKind.NOTE.value:
        if article.note_sealed is None:
            raise TicketError(f"note {article.id} has no text")
        return open_sealed(master, article.note_sealed, note_context(ticket.number, article.id))
    if article.stored_message_id is not None:
        stored = session.get(StoredMessage, article.stored_message_id)
        if stored is not None:
            return read_message(master, stored)
    if article.queue_id is not None:
        sealed = session.scalar(select(SealedContent.sealed)
                                .join(Message, Message.id == SealedContent.message_id)
                                .where(Message.queue_id == article.queue_id))
        if sealed is not None:
            return open_sealed(master, sealed, content_context(article.queue_id))
    raise TicketError(f"the content of article {article.id} is no longer stored")


def _audit(session: Session, actor: str, ticket: Ticket, article: Article, part: str) -> None:
    audit.record(session, actor=actor, action=AuditAction.TICKET_CONTENT_READ,
                 queue_id=article.queue_id, detail={
                     "ticket": ticket.number, "article": article.id, "kind": article.kind,
                     "part": part})
