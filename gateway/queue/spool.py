"""Durable intake: a received message becomes a queue row with sealed content.

The edge answers 250 only after ``store_received``'s transaction has committed (and on SQLite
with ``synchronous=FULL`` that means fsynced).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, Sealed, seal_later, sealed_bytes
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from gateway.db_blobs import sqlite_for_large, write_blob
from gateway.models import (
    Direction,
    Message,
    MessageState,
    Recipient,
    RecipientState,
    SealedContent,
)
from gateway.queue.wake import mark_runnable


@dataclass(frozen=True)
class Envelope:
    direction: Direction
    mail_from: str
    rcpt_tos: Sequence[str]
    # The SMTP edge hands over its receive buffer itself (no copy of a large message);
    # nothing writes to it once it is here.
    data: bytes | bytearray
    peer: str = ""
    helo: str = ""
    auth_user: str | None = None
    # How the message came in over SMTP ("TLSv1.3 TLS_AES_256_GCM_SHA384", or "none" for a
    # plain session); None where it did not come over SMTP (portal, bounces, notices).
    tls: str | None = None


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
    (SQLite has one for the whole file) held only for the inserts and the commit. Large
    content is the exception: it is sealed while it is written into its blob
    (``SealedStream``), so the edge never holds a 50 MB message and its ciphertext at once;
    AES-GCM at about 2 GB/s keeps the lock a few tens of milliseconds longer for it.
    """

    envelope: Envelope
    queue_id: str
    sealed: Sealed
    recipients: tuple[str, ...]


def prepare(master: MasterKey, envelope: Envelope) -> Prepared:
    queue_id = new_queue_id()
    return Prepared(
        envelope=envelope,
        queue_id=queue_id,
        sealed=seal_later(master, (envelope.data,), content_context(queue_id)),
        # Duplicate RCPTs are one recipient: deliver once.
        recipients=tuple(dict.fromkeys(envelope.rcpt_tos)),
    )


@dataclass(frozen=True)
class Arrival:
    """A prepared message with who received it and when."""

    prepared: Prepared
    actor: str
    now: datetime
    # Not for a worker before then (None: at once); the demo's follow-up waits for the mail
    # it answers.
    not_before: datetime | None = None


def store_received(session: Session, master: MasterKey, envelope: Envelope, *,
                   actor: str, now: datetime, not_before: datetime | None = None,
                   audit_to: list[audit.Event] | None = None) -> Stored:
    return store_batch(session, [Arrival(prepare(master, envelope), actor, now,
                                         not_before)], audit_to=audit_to)[0]


# Built once: statements with parameters given at execution hit SQLAlchemy's compiled cache.
_messages = table_of(Message)
_INSERT_MESSAGES = insert(_messages).returning(_messages.c.id, sort_by_parameter_order=True)
_INSERT_RECIPIENTS = insert(table_of(Recipient))
_content = table_of(SealedContent)
_INSERT_CONTENT = insert(_content)
# message_id is the table's INTEGER PRIMARY KEY, so on SQLite it is the rowid write_blob needs.
_INSERT_CONTENT_ZEROS = insert(_content).values(sealed=func.zeroblob(bindparam("length")))


def store_batch(session: Session, batch: Sequence[Arrival], *,
                audit_to: list[audit.Event] | None = None) -> list[Stored]:
    """Insert queue rows, recipients, sealed content and audit entries for a batch.

    Multi-row Core inserts: a statement per table, not per message. On this hot path the
    cost per statement, not the commit, decides how many messages a second the edge takes.
    With ``audit_to`` the audit entries are added to that list instead, for a caller that
    records them with its own in this same transaction (the worker, for a ticket's receipt:
    one append instead of two).
    """
    message_ids: list[int] = list(session.execute(_INSERT_MESSAGES, [{
        "queue_id": a.prepared.queue_id,
        "direction": a.prepared.envelope.direction,
        "state": MessageState.RECEIVED,
        "mail_from": a.prepared.envelope.mail_from,
        "peer": a.prepared.envelope.peer,
        "helo": a.prepared.envelope.helo[:255],
        "auth_user": a.prepared.envelope.auth_user,
        "size": len(a.prepared.envelope.data),
        "received_at": a.now,
        "updated_at": a.now,
        "next_attempt_at": a.now if a.not_before is None else a.not_before,
        "attempts": 0,
    } for a in batch]).scalars())
    pairs = list(zip(message_ids, (a.prepared for a in batch), strict=True))
    session.execute(_INSERT_RECIPIENTS, [
        {"message_id": mid, "address": a, "state": RecipientState.PENDING}
        for mid, p in pairs for a in p.recipients
    ])
    streamed = [(mid, p, raw) for mid, p in pairs
                if (raw := sqlite_for_large(session, p.sealed)) is not None]
    large = {mid for mid, _, _ in streamed}
    small = [{"message_id": mid, "sealed": sealed_bytes(p.sealed)}
             for mid, p in pairs if mid not in large]
    if small:
        session.execute(_INSERT_CONTENT, small)
    for mid, p, raw in streamed:
        # Zeros first, then the blob handle (gateway.db_blobs): SQLite would otherwise copy
        # a large message twice and keep one copy in its cached statement. A SealedStream
        # is sealed as it is written.
        session.execute(_INSERT_CONTENT_ZEROS, {"message_id": mid, "length": len(p.sealed)})
        write_blob(raw, _content.name, "sealed", mid, p.sealed)
    events = [audit.Event(a.actor, AuditAction.RECEIVED, a.prepared.queue_id, {
        "direction": a.prepared.envelope.direction.value,
        "mail_from": a.prepared.envelope.mail_from,
        "recipients": list(a.prepared.recipients),
        "size": len(a.prepared.envelope.data),
        "peer": a.prepared.envelope.peer,
        "auth_user": a.prepared.envelope.auth_user,
        **({"tls": a.prepared.envelope.tls} if a.prepared.envelope.tls is not None else {}),
    }) for a in batch]
    if audit_to is not None:
        audit_to.extend(events)
    else:
        audit.record_many(session, events)
    mark_runnable(session)
    return [Stored(mid, p.queue_id) for mid, p in pairs]
