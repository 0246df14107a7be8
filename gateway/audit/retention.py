"""Deleting the audit trail's personal data when its retention period ends.

Destroying the keys of the months before a given one makes their entries' personal parts
unreadable for good; the entries themselves, their clear facts and the chain stay, so
``xgate audit verify`` still passes. The deletion is itself recorded, in the same
transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from gateway.audit.actions import AuditAction
from gateway.audit.chain import record
from gateway.audit.keys import destroy_keys_before, valid_period


def forget_before(session: Session, before: str, *, actor: str, now: datetime) -> list[str]:
    """Destroy the audit keys of every month before ``before`` (YYYY-MM); returns the months
    whose personal data is now gone (none: nothing recorded)."""
    periods = destroy_keys_before(session, valid_period(before), now)
    if periods:
        record(session, actor=actor, action=AuditAction.AUDIT_KEYS_DESTROYED,
               detail={"periods": periods})
    return periods
