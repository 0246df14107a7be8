"""A ticket's history: a row for every change, who and when; never content."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.db import table_of
from mailboxes.tickets.models import HistoryEntry

_INSERT = insert(table_of(HistoryEntry))


def record(session: Session, ticket_id: int, *, actor: str, action: str, now: datetime,
           **detail: object) -> None:
    session.execute(_INSERT, {
        "ticket_id": ticket_id, "at": now, "actor": actor, "action": action,
        "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None})
