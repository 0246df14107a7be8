"""Held messages that a change in the key directory may now let go.

A message held because a recipient had no usable key is re-queued the moment a key naming
that recipient is approved, or the policy of the partner it belongs to changes (a new
policy, an address or domain added or removed, the partner added): the worker
runs its pipeline again, and the message goes out (or is held again, with a fresh notice,
if a recipient still lacks what its policy asks for). One rule for both, called by the key
directory's own functions, so the CLI and the API cannot differ.

The rule's dependencies point one way: the key directory calls this module, and the outbound
policy words its holds with ``KEY_HOLD_PREFIX`` from here; this module needs neither. Such a
hold is told from others by its kind (``HoldKind.KEY_MISSING``), not by its words.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.models import (
    Direction,
    HoldKind,
    Message,
    MessageState,
    Recipient,
    RecipientState,
)
from gateway.queue.wake import mark_runnable

# How the reason of a message held for a missing key starts (gateway.policy.outbound writes
# it), for the people reading it.
KEY_HOLD_PREFIX = "encryption is required but no usable key exists"


def requeue_held_for(session: Session, addresses: Iterable[str], *, actor: str,
                     now: datetime, why: str, domains: Iterable[str] = ()) -> list[str]:
    """Re-queue outbound messages held for a missing key where a recipient still waiting is
    one of ``addresses`` or in one of ``domains`` (the domain itself, as partner patterns
    match, not its subdomains)."""
    wanted = sorted({a.strip().lower() for a in addresses})
    in_domains = sorted({d.strip().lower() for d in domains})
    if not wanted and not in_domains:
        return []
    address = func.lower(Recipient.address)
    matches = or_(address.in_(wanted),
                  *(address.endswith("@" + d, autoescape=True) for d in in_domains))
    rows = session.execute(
        select(Message.id, Message.queue_id)
        .join(Recipient, Recipient.message_id == Message.id)
        .where(Message.state == MessageState.HELD, Message.direction == Direction.OUTBOUND,
               Message.hold_kind == HoldKind.KEY_MISSING,
               Recipient.state == RecipientState.PENDING, matches)
        .distinct()).all()
    for message_id, queue_id in rows:
        session.execute(update(Message).where(Message.id == message_id,
                                              Message.state == MessageState.HELD)
                        .values(state=MessageState.DEFERRED, next_attempt_at=now,
                                updated_at=now, reason=f"re-queued: {why}", hold_kind=None))
        audit.record(session, actor=actor, action=AuditAction.REQUEUED, queue_id=queue_id,
                     detail={"reason": why})
    if rows:
        mark_runnable(session)
    return [queue_id for _, queue_id in rows]
