"""A reply from a ticket, sent as the mailbox through the outbound queue.

Built here as MIME (text, attachments, the ticket number in the subject, the mailbox's
signature, In-Reply-To/References) and stored in the outbound queue as the submission
listener stores a message, with the mailbox as envelope sender and the staff user as the
authenticated submitter: from there the pipeline decides (consent gate, scan, signature,
encryption for the partner, or held with a reason the ticket shows). The consent gate's
classification fields go in as the ``X-Xgate-Case``/``X-Xgate-Category`` submission headers
the classifier reads (gateway.consent.classify).
"""

from __future__ import annotations

import email.utils
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.consent.classify import CASE_HEADER, CATEGORY_HEADER
from gateway.models import Direction, StaffUser
from gateway.queue.spool import Envelope, store_received
from mailboxes.members import role_in
from mailboxes.models import Mailbox
from mailboxes.tickets import history
from mailboxes.tickets.models import Article, ArticleKind, TicketState
from mailboxes.tickets.records import add_article, follow, get_ticket, open_subject
from mailboxes.tickets.states import ON_REPLY, TicketError

MAX_TEXT = 100_000
MAX_FIELD = 200
MAX_FILENAME = 120


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    ticket_id: int
    text: str
    attachments: Sequence[Attachment] = ()
    case: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Submitted:
    queue_id: str
    article_id: int
    message_id: str


def submit_reply(session: Session, master: MasterKey, reply: Reply, *, username: str,
                 hostname: str, max_bytes: int, now: datetime) -> Submitted:
    """Queue the reply as the mailbox and record it on the ticket; nothing is stored if
    anything is refused (the caller's transaction rolls back on the error)."""
    ticket = get_ticket(session, reply.ticket_id)
    if ticket.state == TicketState.CLOSED.value:
        raise TicketError(f"ticket {ticket.number} is closed; reopen it before replying",
                          key="closed", number=ticket.number)
    user_id = session.scalar(select(StaffUser.id).where(StaffUser.username == username,
                                                        StaffUser.disabled.is_(False)))
    if user_id is None or role_in(session, user_id, ticket.mailbox_id) is None:
        raise TicketError(f"{username} is no member of the mailbox of ticket {ticket.number}",
                          key="not_member", number=ticket.number)
    mailbox = session.get(Mailbox, ticket.mailbox_id)
    assert mailbox is not None  # the ticket's foreign key
    text = reply.text.replace("\r\n", "\n").strip()
    if not text:
        raise TicketError("a reply must have a text", key="reply_empty")
    if len(text) > MAX_TEXT:
        raise TicketError(f"a reply's text may have at most {MAX_TEXT} characters",
                          key="reply_long", limit=MAX_TEXT)
    refs = [r for r in session.scalars(
        select(Article.rfc_message_id).where(Article.ticket_id == ticket.id,
                                             Article.rfc_message_id.is_not(None))
        .order_by(Article.id)) if r]
    last_in = session.scalar(
        select(Article.rfc_message_id).where(Article.ticket_id == ticket.id,
                                             Article.kind == ArticleKind.INBOUND.value,
                                             Article.rfc_message_id.is_not(None))
        .order_by(Article.id.desc()).limit(1))

    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.utils.formataddr((mailbox.name, mailbox.address))
    msg["To"] = ticket.requester
    msg["Subject"] = reply_subject(open_subject(master, ticket.number, ticket.subject_sealed),
                                   ticket.number)
    msg["Date"] = email.utils.format_datetime(now)
    message_id = email.utils.make_msgid(domain=hostname)
    msg["Message-ID"] = message_id
    if last_in or refs:
        msg["In-Reply-To"] = f"<{last_in or refs[-1]}>"
        msg["References"] = " ".join(f"<{r}>" for r in refs[-20:])
    for header, field, value in ((CASE_HEADER, "case", reply.case),
                                 (CATEGORY_HEADER, "category", reply.category)):
        if value is not None and value.strip():
            msg[header.title()] = _field(field, value)
    body = text if not mailbox.signature else f"{text}\n\n-- \n{mailbox.signature}"
    msg.set_content(body + "\n", charset="utf-8", cte="quoted-printable")
    for part in reply.attachments:
        maintype, _, subtype = part.content_type.partition("/")
        if not maintype or not subtype or any(c in part.content_type for c in "\r\n;"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(part.data, maintype=maintype, subtype=subtype,
                           filename=safe_filename(part.filename))
    data = msg.as_bytes()
    if len(data) > max_bytes:
        raise TicketError(f"the reply is {len(data)} bytes; at most {max_bytes} may be sent",
                          key="reply_big", size=len(data), limit=max_bytes)

    stored = store_received(session, master, Envelope(
        direction=Direction.OUTBOUND, mail_from=mailbox.address, rcpt_tos=[ticket.requester],
        data=data, auth_user=username), actor=f"user:{username}", now=now)
    rfc_id = message_id.strip("<>")
    article_id = add_article(session, ticket.id, ArticleKind.REPLY, author=username, now=now,
                             queue_id=stored.queue_id, rfc_message_id=rfc_id)
    history.record(session, ticket.id, actor=username, action="reply", now=now,
                   queue_id=stored.queue_id, attachments=len(reply.attachments))
    follow(session, ticket, ON_REPLY, actor=username, now=now)
    audit.record(session, actor=f"user:{username}", action=AuditAction.TICKET_REPLY_SUBMITTED,
                 queue_id=stored.queue_id, detail={
                     "ticket": ticket.number, "mailbox": mailbox.address,
                     "sent_as": mailbox.address, "user": username,
                     "attachments": len(reply.attachments)})
    return Submitted(stored.queue_id, article_id, rfc_id)


def reply_subject(subject: str, number: str) -> str:
    subject = subject.strip() or "Ihre Nachricht"
    if not subject.lower().startswith(("re:", "aw:")):
        subject = f"Re: {subject}"
    if number.lower() not in subject.lower():
        subject = f"{subject} [{number}]"
    return subject


def safe_filename(name: str) -> str:
    """The last path part, without control characters, never empty or a dot name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" .")
    return base[:MAX_FILENAME] or "attachment"


def _field(field: str, value: str) -> str:
    """``field``: ``case`` or ``category``, as the reply form names them."""
    text = " ".join(value.split())
    if len(text) > MAX_FIELD:
        raise TicketError(f"the {field} field may have at most {MAX_FIELD} characters",
                          key=f"{field}_long", limit=MAX_FIELD)
    return text
