"""Self-service recovery of a pickup code, where the office allows it ([portal]
self_service_codes): a citizen who lost her code asks for a new one on the code page, and it
goes to the same verified channel as before (the hotline call-back number of the ticket, by
the configured SMS sender), never to anything she types in.

The answer on the page is the same whatever happened (no item, expired, no number, asked too
recently, sent), so the page cannot be used to learn whether a link is real. At most one new
code per ``interval`` for an item keeps the office's SMS bill and the citizen's phone quiet;
a new code also lifts a lock and resets the tries, which is safe because whoever asks never
sees the code.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.portal.pickup import codes
from gateway.portal.pickup.items import PORTAL_ACTOR, new_code
from gateway.portal.pickup.models import PickupItem
from gateway.portal.pickup.numbers import citizen_number
from gateway.portal.pickup.sender import CodeSender, CodeSendError, send_code

log = logging.getLogger(__name__)


def resend_code(session: Session, master: MasterKey, sender: CodeSender, token: str, *,
                now: datetime, interval: timedelta, office: str) -> bool:
    """Send a new code for the item ``token`` names to its verified number, in the caller's
    transaction; whether one went (for the caller's log only, never for the page)."""
    item = session.scalar(select(PickupItem).where(
        PickupItem.token_hash == codes.token_hash(token)))
    if item is None or item.expired_at is not None or now >= item.expires_at:
        return False
    number = citizen_number(session, master, item.ticket_id)
    if number is None:
        return False
    if item.code_issued_at is not None and now - item.code_issued_at < interval:
        return False
    code = new_code(session, master, item.id, actor=PORTAL_ACTOR, now=now)
    try:
        send_code(sender, number, code, office=office)
    except CodeSendError as exc:
        log.warning("self-service pickup code not sent: %s", exc, extra={"item": item.id})
        # Withdrawn: a code nobody received must not count as issued.
        item.code_hash = None
        sent = False
    else:
        sent = True
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_CODE_SENT,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id, "sent": sent,
                         "asked_by": "citizen"})
    return sent
