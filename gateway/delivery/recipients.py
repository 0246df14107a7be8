"""Per-recipient bookkeeping: delivered, failed (with a DSN), still pending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.delivery.dsn import Failure, build_dsn
from gateway.models import Direction, Message, Recipient, RecipientState
from gateway.settings import Settings
from gateway.spool import Envelope, store_received


def mark_delivered(session: Session, message_id: int, address: str, response: str,
                   now: datetime) -> None:
    session.execute(
        update(Recipient)
        .where(Recipient.message_id == message_id, Recipient.address == address)
        .values(state=RecipientState.DELIVERED, response=response, delivered_at=now)
    )


def note_attempt(session: Session, message_id: int, address: str, response: str) -> None:
    session.execute(
        update(Recipient)
        .where(Recipient.message_id == message_id, Recipient.address == address)
        .values(response=response)
    )


def pending_recipients(session: Session, message_id: int) -> list[str]:
    return list(session.scalars(
        select(Recipient.address)
        .where(Recipient.message_id == message_id, Recipient.state == RecipientState.PENDING)
        .order_by(Recipient.id)
    ))


def fail_recipients(session: Session, master: MasterKey, settings: Settings, *,
                    message: Message, original: bytes, failures: Sequence[Failure],
                    actor: str, now: datetime) -> str | None:
    """Mark recipients failed and queue one DSN to the sender, in the caller's transaction.

    Returns the DSN's queue id, or None where no DSN is sent (null sender: RFC 5321 6.1
    forbids bouncing a bounce).
    """
    for f in failures:
        session.execute(
            update(Recipient)
            .where(Recipient.message_id == message.id, Recipient.address == f.recipient)
            .values(state=RecipientState.FAILED, response=f"{f.status} {f.diagnostic}")
        )
    dsn_queue_id: str | None = None
    if message.mail_from:
        dsn = build_dsn(
            reporting_mta=settings.smtp.hostname, postmaster=settings.delivery.postmaster,
            to=message.mail_from, queue_id=message.queue_id, failures=failures,
            original=original, arrival=message.received_at, now=now,
        )
        bounce = store_received(session, master, Envelope(
            direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[message.mail_from], data=dsn,
        ), actor=actor, now=now)
        dsn_queue_id = bounce.queue_id
    audit.record(session, actor=actor, action="bounced", queue_id=message.queue_id, detail={
        "failures": [{"recipient": f.recipient, "status": f.status,
                      "diagnostic": f.diagnostic} for f in failures],
        "dsn": dsn_queue_id,
    })
    return dsn_queue_id
