"""Retention keys of the audit trail: one data key per calendar month, wrapped with the master
key, created when the month's first entry is written.

An entry's personal part is sealed with crypto.at_rest under its month's key (the month key
takes the place of the master key there: each entry gets its own data key, wrapped with the
month key), bound to the entry's sequence number. Destroying a month's key
(gateway.audit.retention) makes every personal part of that month unreadable for good, while
the chain, which hashes the sealed blobs, still verifies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.at_rest import KEY_BYTES, MasterKey, open_sealed, seal
from crypto.errors import KeyFileError, SealError
from gateway.db import MASTER_KEY_INFO
from gateway.errors import GatewayError
from gateway.models import AuditKey

_CACHE_INFO = "xgate_audit_period_keys"


class AuditKeyError(GatewayError):
    """A retention key is missing or destroyed where one is needed to write."""


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def valid_period(text: str) -> str:
    """``YYYY-MM``, or ValueError."""
    try:
        parsed = datetime.strptime(text.strip(), "%Y-%m")
    except ValueError:
        raise ValueError(f"not a month (YYYY-MM): {text!r}") from None
    return period_of(parsed)


def master_key_of(session: Session) -> MasterKey:
    """The master key the session's connection offers (gateway.db.make_engine)."""
    source: Callable[[], MasterKey] | None = session.connection().info.get(MASTER_KEY_INFO)
    if source is None:
        raise KeyFileError("the audit trail needs the master key, and this database "
                           "connection was not opened with one (gateway.db.make_engine)")
    return source()


def _wrap_context(period: str) -> bytes:
    return b"xgate audit key\x00" + period.encode()


def _entry_context(seq: int) -> bytes:
    return b"xgate audit entry\x00%d" % seq


def _cache(session: Session) -> dict[str, MasterKey]:
    cache: dict[str, MasterKey] = session.info.setdefault(_CACHE_INFO, {})
    return cache


def _period_key(session: Session, period: str, master: MasterKey | None) -> MasterKey | None:
    """The month's key, None if it was destroyed or never existed."""
    cache = _cache(session)
    if period not in cache:
        row = session.get(AuditKey, period)
        if row is None or row.wrapped is None:
            return None
        _open_into(session, cache, period, row.wrapped, master)
    return cache[period]


def _open_into(session: Session, cache: dict[str, MasterKey], period: str, wrapped: bytes,
               master: MasterKey | None) -> None:
    if master is None:
        master = master_key_of(session)
    try:
        cache[period] = open_period_key(master, period, wrapped)
    except SealError as exc:
        # Said plainly: the bare "sealed with another master key" from a command that
        # only records (queue retry, mailbox add) does not tell the operator which key.
        raise SealError(f"the audit trail's key of {period} does not open with this "
                        f"master key ({exc}): is storage.master_key_file the "
                        "installation's key?") from exc


def key_for_writing(session: Session, period: str, now: datetime,
                    master: MasterKey | None = None, *,
                    wrapped: bytes | None = None) -> MasterKey:
    """The month's key, created if it is the month's first entry. Called with the chain's
    head taken, so two writers cannot both create one.

    ``wrapped``: the month's stored key as the caller read it in this transaction (the chain
    reads it with the head); None reads it here, and also decides between a month without a
    key yet and a destroyed one."""
    cache = _cache(session)
    if wrapped is not None and period not in cache:
        _open_into(session, cache, period, wrapped, master)
    key = _period_key(session, period, master)
    if key is not None:
        return key
    row = session.get(AuditKey, period)
    if row is not None:
        raise AuditKeyError(f"the audit key of {period} was destroyed; nothing more can be "
                            "recorded under it (is the clock right?)")
    if master is None:
        master = master_key_of(session)
    key, wrapped = new_period_key(master, period)
    session.add(AuditKey(period=period, wrapped=wrapped, created_at=now))
    session.flush()
    _cache(session)[period] = key
    return key


def new_period_key(master: MasterKey, period: str) -> tuple[MasterKey, bytes]:
    """A fresh key for ``period`` and its form wrapped with the master key, to store."""
    raw = os.urandom(KEY_BYTES)
    return MasterKey(raw), seal(master, raw, _wrap_context(period))


def open_period_key(master: MasterKey, period: str, wrapped: bytes) -> MasterKey:
    return MasterKey(open_sealed(master, wrapped, _wrap_context(period)))


def seal_personal(key: MasterKey, seq: int, personal: Mapping[str, Any]) -> bytes:
    text = json.dumps(personal, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return seal(key, text.encode(), _entry_context(seq))


def open_personal(session: Session, seq: int, at: datetime,
                  blob: bytes) -> dict[str, Any] | None:
    """The entry's personal part; None once its month's key is destroyed."""
    key = _period_key(session, period_of(at), None)
    if key is None:
        return None
    try:
        return open_personal_with(key, seq, blob)
    except SealError:
        # Altered: ``audit verify`` names it; readers see it as unreadable, not as data.
        return None


def open_personal_with(key: MasterKey, seq: int, blob: bytes) -> dict[str, Any]:
    personal: dict[str, Any] = json.loads(open_sealed(key, blob, _entry_context(seq)))
    return personal


def destroy_keys_before(session: Session, before: str, now: datetime) -> list[str]:
    """Destroy the keys of every month before ``before`` (YYYY-MM, at most the current
    month, so the month being written is never destroyed); returns the months destroyed.
    The caller records the deletion in the trail."""
    before = valid_period(before)
    if before > period_of(now):
        raise ValueError(f"{before} is in the future: only past months can be forgotten")
    periods = list(session.scalars(
        select(AuditKey.period).where(AuditKey.period < before, AuditKey.wrapped.is_not(None))
        .order_by(AuditKey.period)))
    if periods:
        session.execute(update(AuditKey).where(AuditKey.period.in_(periods))
                        .values(wrapped=None, destroyed_at=now))
        cache = _cache(session)
        for period in periods:
            cache.pop(period, None)
    return periods
