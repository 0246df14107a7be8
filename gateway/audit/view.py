"""Reading the audit trail for people (``xgate audit show``, ``xgate queue show``); verification
is gateway.audit.

Entries are shown as they were recorded: the clear part with the personal part opened under
its month's key. Once that key is destroyed, the personal part reads "(deleted)".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.chain import canonical
from gateway.audit.keys import open_personal
from gateway.audit.personal import merge
from gateway.models import AuditEntry

DELETED = "(deleted)"


@dataclass(frozen=True)
class ReadableEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    queue_id: str | None
    details: dict[str, Any]
    # The entry had a personal part and its month's key is destroyed.
    personal_deleted: bool = False

    @property
    def detail(self) -> str:
        """The details as canonical JSON, as they were stored before sealing."""
        return canonical(self.details)


def readable(session: Session, entry: AuditEntry) -> ReadableEntry:
    clear: dict[str, Any] = json.loads(entry.detail)
    if entry.sealed is None:
        return ReadableEntry(entry.seq, entry.at, entry.actor, entry.action, entry.queue_id,
                             clear)
    opened = open_personal(session, entry.seq, entry.at, entry.sealed)
    if opened is None:
        return ReadableEntry(entry.seq, entry.at, entry.actor or DELETED, entry.action,
                             entry.queue_id, {**clear, "personal": DELETED},
                             personal_deleted=True)
    actor, details = merge(entry.actor, clear, opened)
    return ReadableEntry(entry.seq, entry.at, actor, entry.action, entry.queue_id, details)


def opened(session: Session, entries: Iterable[AuditEntry]) -> list[ReadableEntry]:
    """Stored entries as they were recorded (personal parts opened)."""
    return [readable(session, e) for e in entries]


def recent_entries(session: Session, *, queue_id: str | None = None,
                   limit: int = 50) -> list[ReadableEntry]:
    """The last ``limit`` entries (of one message, if given), oldest first."""
    query = select(AuditEntry)
    if queue_id is not None:
        query = query.where(AuditEntry.queue_id == queue_id.strip().upper())
    newest_first = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit)).all()
    return [readable(session, e) for e in reversed(newest_first)]


def entries_for_message(session: Session, queue_id: str) -> list[ReadableEntry]:
    return [readable(session, e) for e in session.scalars(
        select(AuditEntry).where(AuditEntry.queue_id == queue_id).order_by(AuditEntry.seq))]


def all_entries(session: Session) -> Sequence[ReadableEntry]:
    """Every entry, oldest first (for tests and exports of small trails)."""
    return [readable(session, e) for e in session.scalars(
        select(AuditEntry).order_by(AuditEntry.seq))]
