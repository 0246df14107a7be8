"""A citizen's answer from the pickup page: an inbound message into the ticket's mailbox,
stored sealed in the queue like mail (scanned, filed and threaded by the worker).

It quotes the staff reply's Message-ID (In-Reply-To) and the ticket number in the subject,
so the existing threading (mailboxes.tickets.threading) joins it to the same ticket. Text
only: files are left to the upload form, which streams and seals them.
"""

from __future__ import annotations

import email
import email.utils
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


def submit_answer(session: Session, master: MasterKey, item_id: int, text: str, *,
                  hostname: str, now: datetime) -> str:
    """Queue the citizen's answer to an opened item; its queue id."""
    item = openable(session, item_id, now=now)
    if item.opened_at is None:
        raise PickupError(f"pickup item {item_id} has not been opened with its code")
    body = text.strip()
    if not body:
        raise PickupError("an answer needs some text")
    if len(body) > MAX_TEXT:
        raise PickupError(f"an answer may have at most {MAX_TEXT} characters")
    ticket = session.get(Ticket, item.ticket_id)
    assert ticket is not None  # the item is deleted with its ticket
    mailbox = session.get(Mailbox, ticket.mailbox_id)
    assert mailbox is not None
    original = email.message_from_bytes(
        open_sealed(master, item.content_sealed, content_context(item.id)),
        policy=policy.default)
    msg = EmailMessage()
    msg["From"] = item.recipient
    msg["To"] = mailbox.address
    msg["Subject"] = f"Antwort über das Bürgerportal [{ticket.number}]"
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    replied_to = original.get("Message-ID")
    if replied_to:
        msg["In-Reply-To"] = str(replied_to)
        msg["References"] = str(replied_to)
    msg.set_content(body)
    stored = store_received(session, master, Envelope(
        direction=Direction.INBOUND, mail_from=item.recipient, rcpt_tos=[mailbox.address],
        data=msg.as_bytes()), actor=PORTAL_ACTOR, now=now)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_ANSWERED,
                 queue_id=stored.queue_id, detail={"item": item.id, "ticket_id": ticket.id})
    return stored.queue_id
