"""The receipt (Eingangsbestätigung) a new ticket sends to whoever wrote in.

Never to the null sender, to automatic mail (``Auto-Submitted`` other than ``no``), to mail
from a list (``Precedence: bulk|list|junk``, ``List-Id``), to our own addresses, nor more
than ``RATE_LIMIT`` times an hour to one sender from one mailbox: a receipt answering a
receipt or an autoresponder would go round for ever. The receipt itself says
``Auto-Submitted: auto-replied`` and goes out with the null sender, so nothing answers it
(RFC 3834). A citizen portal submission is marked ``Auto-Submitted: auto-generated`` by the
portal, which gives its own receipt (gateway.portal.submission): one receipt, not two. It
enters the outbound queue the way the gateway's notices do, in the caller's transaction:
filed, threaded and acknowledged together or not at all.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage, Message
from email.policy import SMTP

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.db import table_of
from gateway.models import Direction
from gateway.queue.spool import Envelope, Stored, store_received
from mailboxes.models import Mailbox
from mailboxes.outreach import TICKET_PLACEHOLDER
from mailboxes.tickets.models import Article, ArticleKind, Ticket

RATE_LIMIT = 3
RATE_WINDOW = timedelta(hours=1)
_BULK = frozenset({"bulk", "list", "junk"})

DEFAULT_TEXT = (
    "Guten Tag,\n\n"
    "vielen Dank für Ihre Nachricht. Sie ist bei uns eingegangen und wird unter der "
    f"Vorgangsnummer {TICKET_PLACEHOLDER} bearbeitet. Bitte geben Sie diese Nummer bei "
    "Rückfragen im Betreff an; wenn Sie auf diese Nachricht antworten, bleibt sie "
    "erhalten.\n\n"
    "Dies ist eine automatisch erzeugte Nachricht.")


@dataclass(frozen=True)
class ReceiptSender:
    """What of a mailbox its receipts need (the filing path reads these columns, not the
    ORM entity)."""

    id: int
    address: str
    name: str
    receipt_enabled: bool
    receipt_template: str | None
    signature: str | None


_boxes = table_of(Mailbox)
# In ReceiptSender's order; a caller's query may add columns after them.
SENDER_COLUMNS = (_boxes.c.id, _boxes.c.address, _boxes.c.name, _boxes.c.receipt_enabled,
                  _boxes.c.receipt_template, _boxes.c.signature)


@dataclass(frozen=True)
class Receipt:
    stored: Stored
    message_id: str


def refusal(headers: Message, mail_from: str, *, from_own_address: bool) -> str | None:
    """Why no receipt goes to this message's sender; None if one may. ``from_own_address``:
    the envelope sender is one of the gateway's own addresses (a shared mailbox, the
    postmaster)."""
    found = message_refusal(headers, mail_from)
    if found is None and from_own_address:
        return "our own address"
    return found


def message_refusal(headers: Message, mail_from: str) -> str | None:
    """What in the message itself forbids a receipt (checked before the sender's address,
    which needs the database)."""
    if not mail_from:
        return "null sender"
    auto = str(headers.get("Auto-Submitted", "no")).split(";", 1)[0].strip().lower()
    if auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(headers.get("Precedence", "")).strip().lower()
    if precedence in _BULK:
        return f"Precedence: {precedence}"
    if headers.get("List-Id") is not None:
        return "List-Id"
    return None


# How many receipts mailbox ``box`` sent to ``recipient`` since ``since`` (the rate limit's
# count), as a scalar subquery of the query that reads the mailbox (mailboxes.tickets.threading).
RECENT_RECEIPTS = (
    select(func.count()).select_from(Article)
    .join(Ticket, Ticket.id == Article.ticket_id)
    .where(Ticket.mailbox_id == bindparam("box"), Article.kind == ArticleKind.RECEIPT.value,
           Article.author == bindparam("recipient"), Article.created_at >= bindparam("since")))


def window_start(now: datetime) -> datetime:
    return now - RATE_WINDOW


def build_receipt(mailbox: ReceiptSender, *, to: str, number: str, in_reply_to: str | None,
                  hostname: str, now: datetime) -> tuple[bytes, str]:
    """The receipt message and its Message-ID (without brackets)."""
    text = (mailbox.receipt_template or DEFAULT_TEXT).replace(TICKET_PLACEHOLDER, number)
    if mailbox.signature:
        text = f"{text}\n\n-- \n{mailbox.signature}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.utils.formataddr((mailbox.name, mailbox.address))
    msg["To"] = to
    msg["Subject"] = f"Eingangsbestätigung [{number}]"
    msg["Date"] = email.utils.format_datetime(now)
    message_id = email.utils.make_msgid(domain=hostname)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(text + "\n", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes(), message_id.strip("<>")


def queue_receipt(session: Session, master: MasterKey, mailbox: ReceiptSender, *, to: str,
                  number: str, in_reply_to: str | None, hostname: str, actor: str,
                  now: datetime, audit_to: list[audit.Event] | None = None) -> Receipt:
    """The receipt queued; with ``audit_to`` its audit entry goes there for the caller to
    record in this transaction (gateway.queue.spool.store_batch)."""
    data, message_id = build_receipt(mailbox, to=to, number=number, in_reply_to=in_reply_to,
                                     hostname=hostname, now=now)
    stored = store_received(session, master, Envelope(
        direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[to], data=data),
        actor=actor, now=now, audit_to=audit_to)
    return Receipt(stored, message_id)
