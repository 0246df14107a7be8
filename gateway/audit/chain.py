"""The append-only, hash-chained audit trail.

Each entry's hash covers its own fields and the previous entry's hash, so changing, deleting
or reordering any entry breaks the chain from there on. Entries are written in the caller's
transaction, so a state change and its record commit together or not at all.

An entry's personal part (gateway.audit.personal) is stored sealed under the key of its
month (gateway.audit.keys), and the hash covers the sealed blob, never the plaintext: once a
month's key is destroyed its personal data is gone, and the chain still verifies. Writing
needs the master key; the session's connection offers it (gateway.db.make_engine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.audit import keys, personal
from gateway.audit.actions import AuditAction
from gateway.db import table_of
from gateway.models import AuditEntry, AuditHead, AuditKey, utcnow

GENESIS_HASH = "0" * 64


def canonical(detail: Mapping[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str,
               queue_id: str | None, detail: str, sealed: bytes | None = None) -> str:
    fields: dict[str, Any] = {
        "seq": seq, "at": at.isoformat(), "actor": actor, "action": action,
        "queue_id": queue_id, "detail": detail,
    }
    if sealed is not None:
        # The blob as stored, so altering it breaks the chain like altering any clear field.
        fields["sealed"] = hashlib.sha256(sealed).hexdigest()
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """One thing to record: who or what, did which action, to which message, and why."""

    actor: str
    action: AuditAction
    queue_id: str | None = None
    detail: Mapping[str, Any] | None = None


_head = table_of(AuditHead)
# Taking the head row first serialises appenders: a row lock on PostgreSQL, the write lock on
# SQLite (transactions there begin IMMEDIATE). Reserving n sequence numbers at once lets a
# batch append with three statements however long it is.
# The same statement reads the wrapped retention key of the month named (None if it has none
# or it was destroyed): under the head, in this transaction, without a query of its own.
_keys = table_of(AuditKey)
_ADVANCE_HEAD = (update(_head).where(_head.c.id == 1).values(seq=_head.c.seq + bindparam("n"))
                 .returning(_head.c.seq, _head.c.last_hash,
                            select(_keys.c.wrapped)
                            .where(_keys.c.period == bindparam("period")).scalar_subquery()))
_CREATE_HEAD = insert(_head)
_SET_HEAD_HASH = update(_head).where(_head.c.id == 1).values(last_hash=bindparam("digest"))
_INSERT_ENTRY = insert(table_of(AuditEntry))


def record(session: Session, *, actor: str, action: AuditAction, queue_id: str | None = None,
           detail: Mapping[str, Any] | None = None) -> str:
    """Append one entry in the caller's transaction; returns its hash."""
    return record_many(session, [Event(actor, action, queue_id, detail)])[0]


def record_many(session: Session, events: Sequence[Event]) -> list[str]:
    """Append entries in order, in the caller's transaction; returns their hashes."""
    if not events:
        return []
    for event in events:
        _known(event.action)
    # The month the entries will most likely be dated in; checked against ``at`` below.
    expected_period = keys.period_of(utcnow())
    head = session.execute(_ADVANCE_HEAD, {"n": len(events), "period": expected_period}
                           ).one_or_none()
    wrapped: bytes | None = None
    if head is None:
        # Migration 0002 creates the head; a database without one starts the chain here.
        session.execute(_CREATE_HEAD, {"id": 1, "seq": len(events), "last_hash": GENESIS_HASH})
        last_seq, prev = len(events), GENESIS_HASH
    else:
        last_seq, prev, wrapped = head
    # Microsecond precision survives every backend, so verification recomputes the same hash.
    at = utcnow()
    period = keys.period_of(at)
    if period != expected_period:
        # A month began meanwhile: the key read was the previous month's.
        wrapped = None
    rows = []
    digests = []
    key: MasterKey | None = None
    for seq, event in enumerate(events, start=last_seq - len(events) + 1):
        part = personal.split(event.actor, event.detail or {})
        text = canonical(part.detail)
        sealed = None
        if part.personal is not None:
            key = key or keys.key_for_writing(session, period, at, wrapped=wrapped)
            sealed = keys.seal_personal(key, seq, part.personal)
        digest = entry_hash(prev, seq, at, part.actor, event.action, event.queue_id, text,
                            sealed)
        rows.append({"seq": seq, "at": at, "actor": part.actor, "action": event.action,
                     "queue_id": event.queue_id, "detail": text, "sealed": sealed,
                     "prev_hash": prev, "entry_hash": digest})
        digests.append(digest)
        prev = digest
    session.execute(_INSERT_ENTRY, rows)
    session.execute(_SET_HEAD_HASH, {"digest": prev})
    return digests


def _known(action: str) -> None:
    # Typed callers cannot pass anything else, but a str slips past at run time; refused
    # before anything is written, so the trail only holds actions that mean something.
    try:
        AuditAction(action)
    except ValueError:
        raise ValueError(f"unknown audit action {action!r}: add it to "
                         "gateway.audit.actions.AuditAction first") from None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str = ""


def verify(session: Session, batch: int = 5000,
           progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Walk the whole chain; name the first entry whose link or hash does not hold.

    The one check of ``xgate audit verify`` and of the console's *verify chain* (a background
    task): ``progress(checked, total)`` is called after each batch, ``total`` being the
    number of entries the head named when the walk began.
    """
    prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    total = session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0
    for entry in _iter_entries(session, batch):
        if progress is not None and checked and checked % batch == 0:
            progress(checked, max(total, checked))
        if entry.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq,
                                f"entry {expected_seq} is missing (next is {entry.seq})")
        if entry.prev_hash != prev:
            return VerifyResult(False, checked, entry.seq,
                                "does not link to the previous entry")
        recomputed = entry_hash(prev, entry.seq, entry.at, entry.actor, entry.action,
                                entry.queue_id, entry.detail, entry.sealed)
        if recomputed != entry.entry_hash:
            return VerifyResult(False, checked, entry.seq,
                                "content does not match its hash (altered)")
        prev = entry.entry_hash
        expected_seq += 1
        checked += 1
    head = session.get(AuditHead, 1)
    if head is None and checked:
        return VerifyResult(False, checked, checked,
                            "the chain's head record is missing (removed)")
    if head is not None and (head.seq != checked or head.last_hash != prev):
        return VerifyResult(False, checked, checked + 1 if head.seq > checked else head.seq,
                            f"chain ends at entry {checked} but the head names {head.seq} "
                            "(entries removed from the end)")
    return VerifyResult(True, checked)


def _iter_entries(session: Session, batch: int) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()
