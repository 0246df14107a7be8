"""Claiming and releasing queue rows.

A worker claims a runnable message with a lease. On PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED`` so several worker processes never take the same row; on SQLite the
claim transaction holds the database's write lock. A worker that dies leaves its lease to
expire, and the message is then claimed again: nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import table_of
from gateway.db_blobs import STREAMED_BLOB_BYTES, open_sealed_blob, sqlite_connection
from gateway.models import (
    RUNNABLE_STATES,
    Direction,
    HoldKind,
    Message,
    MessageState,
    SealedContent,
)


@dataclass(frozen=True)
class Claim:
    message_id: int
    queue_id: str
    owner: str
    attempt: int


# Prebuilt Core statements with bound parameters: the worker runs these for every message,
# and building ORM statements anew each time cost more than executing them.
_m = table_of(Message)
_CLAIMABLE = (
    select(_m.c.id, _m.c.queue_id, _m.c.attempts, _m.c.state)
    .where(or_(
        and_(_m.c.state.in_([s.value for s in RUNNABLE_STATES]),
             _m.c.next_attempt_at <= bindparam("now")),
        and_(_m.c.state == MessageState.PROCESSING.value,
             _m.c.lease_until < bindparam("now")),
    ))
    .order_by(_m.c.next_attempt_at, _m.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_TAKE = (update(_m).where(_m.c.id == bindparam("mid"))
         .values(state=MessageState.PROCESSING.value, lease_owner=bindparam("owner"),
                 lease_until=bindparam("until"), attempts=bindparam("attempts"),
                 updated_at=bindparam("now")))
_HELD_BY = and_(_m.c.id == bindparam("mid"), _m.c.lease_owner == bindparam("owner"),
                _m.c.state == MessageState.PROCESSING.value)
_RENEW = update(_m).where(_HELD_BY).values(lease_until=bindparam("until"))
_RELEASE = (update(_m).where(_HELD_BY)
            .values(state=bindparam("new_state"), reason=bindparam("reason"),
                    updated_at=bindparam("now"), lease_owner=None, lease_until=None,
                    facts=func.coalesce(bindparam("facts"), _m.c.facts),
                    hold_kind=bindparam("hold_kind"),
                    case_reference=func.coalesce(bindparam("case_reference"),
                                                 _m.c.case_reference)))
_RELEASE_RESCHEDULED = _RELEASE.values(next_attempt_at=bindparam("next_attempt"))
_RELEASE_SCAN_FAILED = _RELEASE_RESCHEDULED.values(scan_failures=_m.c.scan_failures + 1)
_SCAN_FAILURES = select(_m.c.scan_failures).where(_m.c.id == bindparam("mid"))


# When the next message becomes claimable without anyone storing anything: a retry whose
# time comes, or the lease of a worker that stopped running out.
_NEXT_RUNNABLE = select(func.min(_m.c.next_attempt_at)).where(
    _m.c.state.in_([s.value for s in RUNNABLE_STATES]))
_NEXT_LEASE_END = select(func.min(_m.c.lease_until)).where(
    _m.c.state == MessageState.PROCESSING.value)


def next_due(session: Session) -> datetime | None:
    """The earliest moment a message becomes claimable by time alone; None if none will."""
    times = [t for t in (session.execute(_NEXT_RUNNABLE).scalar(),
                         session.execute(_NEXT_LEASE_END).scalar()) if t is not None]
    return min(times) if times else None


def claim_next(session: Session, owner: str, now: datetime, lease_seconds: float) -> Claim | None:
    row = session.execute(_CLAIMABLE, {"now": now}).one_or_none()
    if row is None:
        return None
    message_id, queue_id, attempts, state = row
    session.execute(_TAKE, {"mid": message_id, "owner": owner, "attempts": attempts + 1,
                            "until": now + timedelta(seconds=lease_seconds), "now": now})
    if state == MessageState.PROCESSING:
        audit.record(session, actor=owner, action=AuditAction.LEASE_EXPIRED, queue_id=queue_id,
                     detail={"note": "previous worker stopped; message resumed"})
    return Claim(message_id, queue_id, owner, attempts + 1)


def renew_lease(session: Session, claim: Claim, now: datetime, lease_seconds: float) -> bool:
    result = session.execute(_RENEW, {"mid": claim.message_id, "owner": claim.owner,
                                      "until": now + timedelta(seconds=lease_seconds)})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, claim: Claim, *, state: MessageState, reason: str | None,
            now: datetime, next_attempt_at: datetime | None = None,
            facts: str | None = None, hold_kind: HoldKind | None = None,
            case_reference: str | None = None, scan_failed: bool = False) -> bool:
    """Move a claimed message to its next state. False if the lease was lost meanwhile.

    ``facts`` (JSON) replaces the message's recorded facts; None keeps them. ``hold_kind``
    is set as given (None unless it is held); ``case_reference`` None keeps the one known.
    ``scan_failed`` (with a ``next_attempt_at``) counts one more scan clamd failed on.
    """
    params: dict[str, object] = {"mid": claim.message_id, "owner": claim.owner,
                                 "new_state": state.value, "reason": reason, "now": now,
                                 "facts": facts,
                                 "hold_kind": hold_kind.value if hold_kind else None,
                                 "case_reference": case_reference}
    statement = _RELEASE
    if next_attempt_at is not None:
        statement = _RELEASE_SCAN_FAILED if scan_failed else _RELEASE_RESCHEDULED
        params["next_attempt"] = next_attempt_at
    result = session.execute(statement, params)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def scan_failures(session: Session, message_id: int) -> int:
    """How often clamd has failed while scanning this message (see ScanFailed)."""
    return int(session.execute(_SCAN_FAILURES, {"mid": message_id}).scalar_one())


@dataclass(frozen=True)
class Loaded:
    """A claimed message as a worker needs it: envelope facts and the opened content."""

    id: int
    queue_id: str
    direction: Direction
    mail_from: str
    received_at: datetime
    auth_user: str | None
    content: bytes


_c = table_of(SealedContent)
_LOAD = (select(_m.c.id, _m.c.queue_id, _m.c.direction, _m.c.mail_from, _m.c.received_at,
                _m.c.auth_user, _c.c.sealed)
         .join(_c, _c.c.message_id == _m.c.id)
         .where(_m.c.id == bindparam("mid")))
# On SQLite: the content only if it is small (length() reads no content), else its length,
# and the content is read through the blob handle (gateway.db_blobs).
_LOAD_SQLITE = (select(_m.c.id, _m.c.queue_id, _m.c.direction, _m.c.mail_from,
                       _m.c.received_at, _m.c.auth_user,
                       case((func.length(_c.c.sealed) < STREAMED_BLOB_BYTES, _c.c.sealed),
                            else_=None))
                .join(_c, _c.c.message_id == _m.c.id)
                .where(_m.c.id == bindparam("mid")))


def load(session: Session, message_id: int, master: MasterKey,
         context: Callable[[str], bytes]) -> Loaded:
    """The message with its content opened (``context`` of its queue id is the sealed
    content's associated data). Raises ``SealError`` if the content does not open.

    A large blob on SQLite is decrypted as it is read through the blob handle, inside this
    read transaction: its ciphertext is never whole in memory beside the plaintext."""
    raw = sqlite_connection(session)
    row = session.execute(_LOAD if raw is None else _LOAD_SQLITE, {"mid": message_id}).one()
    message_id, queue_id, direction, mail_from, received_at, auth_user, sealed = row
    if sealed is not None:
        content = open_sealed(master, sealed, context(queue_id))
    else:
        assert raw is not None  # only the SQLite statement leaves the content unread
        # message_id is the table's INTEGER PRIMARY KEY: the rowid.
        content = open_sealed_blob(raw, _c.name, "sealed", message_id, master,
                                   context(queue_id))
    return Loaded(message_id, queue_id, direction, mail_from, received_at, auth_user,
                  content)
