"""Durable intake: a received message becomes a queue row with sealed content.

The edge answers 250 only after ``store_received``'s transaction has committed (and on SQLite
with ``synchronous=FULL`` that means fsynced).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, seal
from gateway import audit
from gateway.db import table_of
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


@dataclass(frozen=True)
class Stored:
    id: int
    queue_id: str


@dataclass(frozen=True)
class Prepared:
    """An envelope made ready for storage: queue id chosen, content sealed.

    Sealing is CPU work; doing it before the transaction keeps the database's write lock
    (SQLite has one for the whole file) held only for the inserts and the commit.
    """

    envelope: Envelope
    queue_id: str
    sealed: bytes
    recipients: tuple[str, ...]


def prepare(master: MasterKey, envelope: Envelope) -> Prepared:
    queue_id = new_queue_id()
    return Prepared(
        envelope=envelope,
        queue_id=queue_id,
        sealed=seal(master, envelope.data, content_context(queue_id)),
        # Duplicate RCPTs are one recipient: deliver once.
        recipients=tuple(dict.fromkeys(envelope.rcpt_tos)),
    )


def store_received(session: Session, master: MasterKey, envelope: Envelope, *,
                   actor: str, now: datetime) -> Stored:
    return store_prepared(session, prepare(master, envelope), actor=actor, now=now)


# Built once: statements with parameters given at execution hit SQLAlchemy's compiled cache.
_messages = table_of(Message)
_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
_INSERT_RECIPIENT = insert(table_of(Recipient))
_INSERT_CONTENT = insert(table_of(SealedContent))


def store_prepared(session: Session, prepared: Prepared, *, actor: str,
                   now: datetime) -> Stored:
    """Insert the queue row, its recipients, sealed content and audit entry.

    Plain Core inserts: on this hot path the ORM's unit of work costs more than the commit.
    """
    envelope = prepared.envelope
    message_id: int = session.execute(_INSERT_MESSAGE, {
        "queue_id": prepared.queue_id,
        "direction": envelope.direction,
        "state": MessageState.RECEIVED,
        "mail_from": envelope.mail_from,
        "peer": envelope.peer,
        "helo": envelope.helo[:255],
        "auth_user": envelope.auth_user,
        "size": len(envelope.data),
        "received_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "attempts": 0,
    }).scalar_one()
    session.execute(_INSERT_RECIPIENT, [
        {"message_id": message_id, "address": a, "state": RecipientState.PENDING}
        for a in prepared.recipients
    ])
    session.execute(_INSERT_CONTENT, {"message_id": message_id, "sealed": prepared.sealed})
    audit.record(session, actor=actor, action="received", queue_id=prepared.queue_id, detail={
        "direction": envelope.direction.value,
        "mail_from": envelope.mail_from,
        "recipients": list(prepared.recipients),
        "size": len(envelope.data),
        "peer": envelope.peer,
        "auth_user": envelope.auth_user,
    })
    return Stored(message_id, prepared.queue_id)
