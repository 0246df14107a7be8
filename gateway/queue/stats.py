"""Read-only figures about the queue, for the health check, metrics and the CLI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.models import RUNNABLE_STATES, Message, MessageState


def state_counts(session: Session) -> dict[MessageState, int]:
    """Messages per state; every state is present, with 0 if it has none."""
    counts = dict.fromkeys(MessageState, 0)
    rows = session.execute(select(Message.state, func.count()).group_by(Message.state))
    for state, count in rows:
        counts[MessageState(state)] = int(count)
    return counts


def oldest_runnable_age(session: Session, now: datetime) -> float:
    """Seconds the longest-waiting runnable message has been in the queue; 0 if none.

    min() keeps the column's type, so the value comes back timezone-aware on every backend.

    Measured from receipt, not from the next attempt: a message deferred for days is exactly
    what an alert on queue age should catch.
    """
    oldest = session.scalar(
        select(func.min(Message.received_at)).where(Message.state.in_(RUNNABLE_STATES))
    )
    if oldest is None:
        return 0.0
    return max(0.0, (now - oldest).total_seconds())
