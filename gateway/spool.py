"""Durable intake: a received message becomes a queue row with sealed content.

The edge answers 250 only after ``store_received``'s transaction has committed (and on SQLite
with ``synchronous=FULL`` that means fsynced).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, seal
from gateway import audit
from gateway.models import (
    Direction,
    Message,
    MessageState,
    Recipient,
    RecipientState,
    SealedContent,
)


@dataclass(frozen=True)
class Envelope:
    direction: Direction
    mail_from: str
    rcpt_tos: Sequence[str]
    data: bytes
    peer: str = ""
    helo: str = ""
    auth_user: str | None = None


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


def content_context(queue_id: str) -> bytes:
    """Associated data that binds sealed message content to its queue row."""
    return b"message:" + queue_id.encode()


def store_received(session: Session, master: MasterKey, envelope: Envelope, *,
                   actor: str, now: datetime) -> Message:
    queue_id = new_queue_id()
    message = Message(
        queue_id=queue_id,
        direction=envelope.direction,
        state=MessageState.RECEIVED,
        mail_from=envelope.mail_from,
        peer=envelope.peer,
        helo=envelope.helo[:255],
        auth_user=envelope.auth_user,
        size=len(envelope.data),
        received_at=now,
        updated_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    # Duplicate RCPTs are one recipient: deliver once.
    unique = list(dict.fromkeys(envelope.rcpt_tos))
    message.recipients = [Recipient(address=a, state=RecipientState.PENDING) for a in unique]
    message.content = SealedContent(
        sealed=seal(master, envelope.data, content_context(queue_id))
    )
    session.add(message)
    session.flush()
    audit.record(session, actor=actor, action="received", queue_id=queue_id, detail={
        "direction": envelope.direction.value,
        "mail_from": envelope.mail_from,
        "recipients": unique,
        "size": len(envelope.data),
        "peer": envelope.peer,
        "auth_user": envelope.auth_user,
    })
    return message
