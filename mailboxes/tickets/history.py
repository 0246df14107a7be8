"""A ticket's history: a row for every change, who and when; never content."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.db import table_of
from mailboxes.tickets.models import HistoryEntry

_INSERT = insert(table_of(HistoryEntry))

HistoryRow = dict[str, object]


def entry(ticket_id: int, *, actor: str, action: str, now: datetime,
          **detail: object) -> HistoryRow:
    """One history row, to write with ``record_all``."""
    return {"ticket_id": ticket_id, "at": now, "actor": actor, "action": action,
            "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None}


def record(session: Session, ticket_id: int, *, actor: str, action: str, now: datetime,
           **detail: object) -> None:
    record_all(session, [entry(ticket_id, actor=actor, action=action, now=now, **detail)])


def record_all(session: Session, rows: Sequence[HistoryRow]) -> None:
    """Write rows in their order, in one statement (a new ticket from mail writes two or
    three at once)."""
    if rows:
        session.execute(_INSERT, list(rows))
