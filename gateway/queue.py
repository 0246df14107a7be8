"""Claiming and releasing queue rows.

A worker claims a runnable message with a lease. On PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED`` so several worker processes never take the same row; on SQLite the
claim transaction holds the database's write lock. A worker that dies leaves its lease to
expire, and the message is then claimed again: nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.models import RUNNABLE_STATES, Message, MessageState


@dataclass(frozen=True)
class Claim:
    message_id: int
    queue_id: str
    owner: str
    attempt: int


def claim_next(session: Session, owner: str, now: datetime, lease_seconds: float) -> Claim | None:
    runnable = and_(Message.state.in_(RUNNABLE_STATES), Message.next_attempt_at <= now)
    abandoned = and_(Message.state == MessageState.PROCESSING, Message.lease_until < now)
    row = session.execute(
        select(Message.id, Message.queue_id, Message.attempts, Message.state)
        .where(or_(runnable, abandoned))
        .order_by(Message.next_attempt_at, Message.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if row is None:
        return None
    message_id, queue_id, attempts, state = row
    session.execute(
        update(Message).where(Message.id == message_id).values(
            state=MessageState.PROCESSING,
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=attempts + 1,
            updated_at=now,
        )
    )
    if state == MessageState.PROCESSING:
        audit.record(session, actor=owner, action="lease-expired", queue_id=queue_id,
                     detail={"note": "previous worker stopped; message resumed"})
    return Claim(message_id, queue_id, owner, attempts + 1)


def renew_lease(session: Session, claim: Claim, now: datetime, lease_seconds: float) -> bool:
    result = session.execute(
        update(Message)
        .where(Message.id == claim.message_id, Message.lease_owner == claim.owner,
               Message.state == MessageState.PROCESSING)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, claim: Claim, *, state: MessageState, reason: str | None,
            now: datetime, next_attempt_at: datetime | None = None) -> bool:
    """Move a claimed message to its next state. False if the lease was lost meanwhile."""
    values: dict[str, object] = {
        "state": state, "reason": reason, "updated_at": now,
        "lease_owner": None, "lease_until": None,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    result = session.execute(
        update(Message)
        .where(Message.id == claim.message_id, Message.lease_owner == claim.owner,
               Message.state == MessageState.PROCESSING)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
