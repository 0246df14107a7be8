"""Rate limits of the portal's submissions, in the database (so they hold across portal
processes and restarts): per client address and for everyone together, per hour.

Addresses are stored only as an HMAC under a key derived from the master key (a plain hash
of an IPv4 address is reversed by trying all 2^32), and every hit is deleted after
``portal.ip_retention_hours``. Runs in the caller's transaction.

The count and the new hit must be one step, or a burst of parallel submissions all count
the same number and all pass: on SQLite the transaction holds the write lock from its start
(gateway.db's BEGIN IMMEDIATE); on PostgreSQL ``take_turn`` takes a transaction-level
advisory lock first.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.portal.models import PortalRateHit
from gateway.settings import PortalSettings

WINDOW = timedelta(hours=1)
# Any fixed number; names the portal's rate-limit lock among PostgreSQL advisory locks.
_LOCK_KEY = 0x7867617465_01  # "xgate" 1


class Limited(StrEnum):
    ADDRESS = "address"
    EVERYONE = "everyone"


def hash_address(master: MasterKey, address: str) -> bytes:
    key = hmac.new(master.key, b"xgate portal client address v1", hashlib.sha256).digest()
    return hmac.new(key, address.encode(), hashlib.sha256).digest()


def take_turn(session: Session) -> None:
    """Wait until no other transaction is counting or recording hits (until commit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def forget_old(session: Session, portal: PortalSettings, now: datetime) -> int:
    """Delete the hits older than the retention; how many."""
    cutoff = now - timedelta(hours=portal.ip_retention_hours)
    result = session.execute(delete(PortalRateHit).where(PortalRateHit.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def over_limit(session: Session, portal: PortalSettings, ip_hash: bytes,
               now: datetime) -> Limited | None:
    """Which limit one more submission would break, if any."""
    since = now - WINDOW
    mine = session.scalar(select(func.count()).select_from(PortalRateHit).where(
        PortalRateHit.ip_hash == ip_hash, PortalRateHit.at >= since)) or 0
    if mine >= portal.submissions_per_ip_per_hour:
        return Limited.ADDRESS
    everyone = session.scalar(select(func.count()).select_from(PortalRateHit).where(
        PortalRateHit.at >= since)) or 0
    if everyone >= portal.submissions_per_hour:
        return Limited.EVERYONE
    return None


def record_hit(session: Session, ip_hash: bytes, now: datetime) -> None:
    session.add(PortalRateHit(ip_hash=ip_hash, at=now))
