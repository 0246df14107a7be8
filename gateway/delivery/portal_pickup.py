"""Delivery to the citizen portal: a recipient the outbound policy planned PORTAL gets no mail
with content. Instead the message (text and attachments) is kept sealed as a pickup item and
the citizen gets a notice without content with the link; the code to open it comes on a
second channel (SMS where a sender is wired in and the citizen's number is known, else the
caseworker gives it from the ticket page).

Nothing lost, nothing twice: the item, the notice (queued as the gateway's own null-sender
mail), the recipient marked delivered and the audit entry are written in ONE transaction, and
an item is unique per queue message and recipient. A crash before the commit leaves the
recipient pending and nothing made; after it, the recipient is finished and the notice in the
queue. Running the step again for a recipient that has its item only marks it delivered.
The SMS goes after the commit: a crash in between leaves an item without code, for which the
caseworker issues one from the ticket (the item says no code was issued yet).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.delivery import notices
from gateway.delivery.dsn import build_notice
from gateway.delivery.recipients import mark_delivered
from gateway.models import Direction
from gateway.portal.pickup import codes
from gateway.portal.pickup.items import create_item
from gateway.portal.pickup.models import PickupItem
from gateway.portal.pickup.numbers import citizen_number
from gateway.portal.pickup.sender import CodeSender, CodeSendError, send_code
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings
from mailboxes.tickets import history
from mailboxes.tickets.models import Article, ArticleKind

log = logging.getLogger(__name__)

OFFICE_TIME = ZoneInfo("Europe/Berlin")
# The recipient's response in the queue: what the message list and the ticket show.
RESPONSE = "delivered to portal"


@dataclass(frozen=True)
class PortalDelivery:
    item_id: int
    ticket_id: int | None
    notice_queue_id: str | None  # None when the item existed already (a repeated run)
    # The citizen's number (from the ticket's hotline call) and the code, for the SMS that
    # is sent after the commit; None when there is no number to send it to.
    sms: tuple[str, str] | None = None


def pickup_link(settings: Settings, token: str) -> str:
    return f"{settings.portal.public_url.rstrip('/')}/p/{token}"


def ticket_of_reply(session: Session, queue_id: str) -> int | None:
    """The ticket whose reply this outbound queue message is; None for other mail."""
    return session.scalar(select(Article.ticket_id).where(
        Article.queue_id == queue_id, Article.kind == ArticleKind.REPLY.value).limit(1))


def put_up_for_pickup(session: Session, master: MasterKey, settings: Settings, *,
                      message_id: int, queue_id: str, sender: str, recipient: str,
                      content: bytes, sms_possible: bool, actor: str,
                      now: datetime) -> PortalDelivery:
    """Make the item and queue the notice for one recipient, in the caller's transaction."""
    existing = session.scalar(select(PickupItem).where(PickupItem.queue_id == queue_id,
                                                       PickupItem.recipient == recipient))
    if existing is not None:
        mark_delivered(session, message_id, recipient, _response(existing.id), now)
        return PortalDelivery(existing.id, existing.ticket_id, None)
    ticket_id = ticket_of_reply(session, queue_id)
    number = citizen_number(session, master, ticket_id) if sms_possible else None
    created = create_item(session, master, ticket_id=ticket_id, recipient=recipient,
                          message=content, actor=actor, now=now,
                          valid_for=timedelta(days=settings.portal.pickup_valid_days),
                          queue_id=queue_id, sender=sender, with_code=number is not None)
    item = session.get(PickupItem, created.item_id)
    assert item is not None
    notice = notices.portal_pickup(
        link=pickup_link(settings, created.token),
        valid_until=item.expires_at.astimezone(OFFICE_TIME), code_by_sms=number is not None)
    data = build_notice(reporting_mta=settings.smtp.hostname,
                        postmaster=settings.delivery.postmaster, to=recipient,
                        subject=notice.subject, text=notice.text, now=now)
    stored = store_received(session, master, Envelope(
        direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[recipient], data=data),
        actor=actor, now=now)
    mark_delivered(session, message_id, recipient, _response(created.item_id), now)
    audit.record(session, actor=actor, action=AuditAction.DELIVERED_TO_PORTAL,
                 queue_id=queue_id, detail={
                     "recipient": recipient, "item": created.item_id, "ticket_id": ticket_id,
                     "notice": stored.queue_id, "code": "sms" if number else "from the ticket"})
    sms = (number, created.code) if number is not None else None
    return PortalDelivery(created.item_id, ticket_id, stored.queue_id, sms)


def _response(item_id: int) -> str:
    return f"{RESPONSE} (pickup item {item_id})"


def send_code_by_sms(session: Session, master: MasterKey, sender: CodeSender,
                     delivery: PortalDelivery, *, office: str, actor: str,
                     now: datetime) -> bool:
    """Send the item's code by SMS (after the item's transaction committed); on failure the
    code is withdrawn, so the caseworker issues a new one from the ticket. Whether it went."""
    if delivery.sms is None:
        return False
    number, code = delivery.sms
    item = session.get(PickupItem, delivery.item_id)
    if item is None or item.code_hash is None or not codes.same(
            item.code_hash, codes.code_hash(master, item.id, code)):
        return False  # a new code was issued meanwhile
    try:
        send_code(sender, number, code, office=office)
    except CodeSendError as exc:
        log.warning("pickup code not sent by SMS: %s", exc, extra={"item": item.id})
        item.code_hash, item.code_issued_at = None, None
        sent = False
    else:
        sent = True
    if item.ticket_id is not None:
        history.record(session, item.ticket_id, actor=actor,
                       action="pickup-code-sent" if sent else "pickup-code-not-sent",
                       now=now, item=item.id)
    audit.record(session, actor=actor, action=AuditAction.PICKUP_CODE_SENT,
                 detail={"item": item.id, "ticket_id": item.ticket_id, "sent": sent})
    return sent
