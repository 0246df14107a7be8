"""Reading the audit trail for people (``xgate audit show``); verification is gateway.audit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import AuditEntry


def recent_entries(session: Session, *, queue_id: str | None = None,
                   limit: int = 50) -> Sequence[AuditEntry]:
    """The last ``limit`` entries (of one message, if given), oldest first."""
    query = select(AuditEntry)
    if queue_id is not None:
        query = query.where(AuditEntry.queue_id == queue_id.strip().upper())
    newest_first = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit)).all()
    return list(reversed(newest_first))


def entries_for_message(session: Session, queue_id: str) -> Sequence[AuditEntry]:
    return session.scalars(
        select(AuditEntry).where(AuditEntry.queue_id == queue_id).order_by(AuditEntry.seq)
    ).all()
