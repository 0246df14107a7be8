"""Per-recipient bookkeeping: delivered, failed (with a DSN), still pending."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from gateway.delivery.dsn import Failure, build_dsn
from gateway.models import Direction, Message, Recipient, RecipientState
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings


@dataclass(frozen=True)
class MessageRef:
    """What bounces need to know of a queue message; stages have it without a query."""

    id: int
    queue_id: str
    mail_from: str
    received_at: datetime


_r = table_of(Recipient)
_m = table_of(Message)
_THIS_RECIPIENT = and_(_r.c.message_id == bindparam("mid"), _r.c.address == bindparam("addr"))
_MARK_DELIVERED = update(_r).where(_THIS_RECIPIENT).values(
    state=RecipientState.DELIVERED.value, response=bindparam("response"),
    delivered_at=bindparam("now"))
_NOTE_ATTEMPT = update(_r).where(_THIS_RECIPIENT).values(response=bindparam("response"))
_MARK_FAILED = update(_r).where(_THIS_RECIPIENT).values(
    state=RecipientState.FAILED.value, response=bindparam("response"))
_PENDING = (select(_r.c.address)
            .where(_r.c.message_id == bindparam("mid"),
                   _r.c.state == RecipientState.PENDING.value)
            .order_by(_r.c.id))


def mark_delivered(session: Session, message_id: int, address: str, response: str,
                   now: datetime) -> None:
    session.execute(_MARK_DELIVERED, {"mid": message_id, "addr": address,
                                      "response": response, "now": now})


def note_attempt(session: Session, message_id: int, address: str, response: str) -> None:
    session.execute(_NOTE_ATTEMPT, {"mid": message_id, "addr": address, "response": response})


def pending_recipients(session: Session, message_id: int) -> list[str]:
    return list(session.scalars(_PENDING, {"mid": message_id}))


def pending_pairs(session: Session, queue_ids: Collection[str]) -> set[tuple[str, str]]:
    """(queue id, address) of every pending recipient of these messages."""
    found: set[tuple[str, str]] = set()
    ids = sorted(queue_ids)
    # In slices: a database limits the parameters of one statement.
    for start in range(0, len(ids), 500):
        found.update((q, a) for q, a in session.execute(
            select(_m.c.queue_id, _r.c.address).join(_m, _m.c.id == _r.c.message_id)
            .where(_m.c.queue_id.in_(ids[start:start + 500]),
                   _r.c.state == RecipientState.PENDING.value)))
    return found


_ALL = select(_r.c.address, _r.c.state).where(_r.c.message_id == bindparam("mid")).order_by(
    _r.c.id)


def recipient_states(session: Session, message_id: int) -> list[tuple[str, RecipientState]]:
    return [(a, RecipientState(s)) for a, s in session.execute(_ALL, {"mid": message_id})]


_FAILED = select(_r.c.address, _r.c.response).where(
    _r.c.message_id == bindparam("mid"),
    _r.c.state == RecipientState.FAILED.value).order_by(_r.c.id)


def failed_responses(session: Session, message_id: int) -> list[tuple[str, str]]:
    """(address, why) of each recipient that failed."""
    return [(a, r or "failed") for a, r in session.execute(_FAILED, {"mid": message_id})]


def fail_recipients(session: Session, master: MasterKey, settings: Settings, *,
                    message: MessageRef, original: bytes, failures: Sequence[Failure],
                    actor: str, now: datetime) -> str | None:
    """Mark recipients failed and queue one DSN to the sender, in the caller's transaction.

    Returns the DSN's queue id, or None where no DSN is sent (null sender: RFC 5321 6.1
    forbids bouncing a bounce).
    """
    session.execute(_MARK_FAILED, [
        {"mid": message.id, "addr": f.recipient, "response": f"{f.status} {f.diagnostic}"}
        for f in failures])
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
    audit.record(session, actor=actor, action=AuditAction.BOUNCED, queue_id=message.queue_id,
                 detail={"failures": [{"recipient": f.recipient, "status": f.status,
                                       "diagnostic": f.diagnostic} for f in failures],
                         "dsn": dsn_queue_id})
    return dsn_queue_id
