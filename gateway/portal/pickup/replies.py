"""A citizen's answer from the pickup page: an inbound message into the ticket's mailbox,
stored sealed in the queue like mail (scanned, filed and threaded by the worker).

It quotes the staff reply's Message-ID (In-Reply-To) and the ticket number in the subject,
so the existing threading (mailboxes.tickets.threading) joins it to the same ticket. Files
come along as attachments (the page read them in memory within the portal's limits and had
clamd scan them; the pipeline scans them again, as all mail). An item for mail that was no
ticket reply has no ticket: the answer then goes to the one who sent that mail.
"""

from __future__ import annotations

import email
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed
from gateway import audit
from gateway.audit import AuditAction
from gateway.models import Direction
from gateway.portal.pickup.items import PORTAL_ACTOR, PickupError, content_context, openable
from gateway.queue.spool import Envelope, store_received
from mailboxes.models import Mailbox
from mailboxes.tickets.models import Ticket

MAX_TEXT = 20_000


@dataclass(frozen=True)
class AnswerFile:
    name: str  # cleaned (gateway.portal.filenames.clean_filename)
    content_type: str
    data: bytes


def submit_answer(session: Session, master: MasterKey, item_id: int, text: str, *,
                  hostname: str, now: datetime, files: Sequence[AnswerFile] = ()) -> str:
    """Queue the citizen's answer (and its files) to an opened item; its queue id."""
    item = openable(session, item_id, now=now)
    if item.opened_at is None:
        raise PickupError(f"pickup item {item_id} has not been opened with its code")
    body = text.strip()
    if not body:
        raise PickupError("an answer needs some text")
    if len(body) > MAX_TEXT:
        raise PickupError(f"an answer may have at most {MAX_TEXT} characters")
    if any(not f.data for f in files):
        raise PickupError("an answer's file must not be empty")
    ticket = session.get(Ticket, item.ticket_id) if item.ticket_id is not None else None
    if ticket is not None:
        mailbox = session.get(Mailbox, ticket.mailbox_id)
        assert mailbox is not None
        to, subject = mailbox.address, f"Antwort über das Bürgerportal [{ticket.number}]"
    elif item.sender:
        to, subject = item.sender, "Antwort über das Bürgerportal"
    else:
        raise PickupError(f"pickup item {item_id} has nobody to answer to")
    original = email.message_from_bytes(
        open_sealed(master, item.content_sealed, content_context(item.id)),
        policy=policy.default)
    msg = EmailMessage()
    msg["From"] = item.recipient
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    replied_to = original.get("Message-ID")
    if replied_to:
        msg["In-Reply-To"] = str(replied_to)
        msg["References"] = str(replied_to)
    msg.set_content(body)
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        if not maintype or not subtype or any(c in file.content_type for c in "\r\n;"):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.name)
    stored = store_received(session, master, Envelope(
        direction=Direction.INBOUND, mail_from=item.recipient, rcpt_tos=[to],
        data=msg.as_bytes()), actor=PORTAL_ACTOR, now=now)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_ANSWERED,
                 queue_id=stored.queue_id, detail={"item": item.id, "ticket_id": item.ticket_id,
                                                   "files": len(files)})
    return stored.queue_id
