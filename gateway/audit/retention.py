"""Deleting the audit trail's personal data when its retention period ends.

Destroying the keys of the months before a given one makes their entries' personal parts
unreadable for good; the entries themselves, their clear facts and the chain stay, so
``xgate audit verify`` still passes. The deletion is itself recorded, in the same
transaction. The CLI (``xgate audit forget``) and the console (/console/audit/forget) both
call forget_before.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from gateway.audit.actions import AuditAction
from gateway.audit.chain import record
from gateway.audit.keys import destroy_keys_before, valid_period


class ForgetRefused(ValueError):
    """forget_before refused its month; ``key`` names why for the console's text catalogue
    ("not_a_month" or "future"), the message says it in English for the CLI."""

    def __init__(self, key: str, month: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.month = month


def forget_before(session: Session, before: str, *, actor: str, now: datetime) -> list[str]:
    """Destroy the audit keys of every month before ``before`` (YYYY-MM); returns the months
    whose personal data is now gone (none: nothing recorded). ForgetRefused for a text that
    is not a month or a month after the current one; nothing is changed then."""
    try:
        month = valid_period(before)
    except ValueError as exc:
        raise ForgetRefused("not_a_month", before, str(exc)) from None
    try:
        # destroy_keys_before holds the rule that the month being written is never forgotten;
        # a valid month it refuses is one in the future.
        periods = destroy_keys_before(session, month, now)
    except ValueError as exc:
        raise ForgetRefused("future", month, str(exc)) from None
    if periods:
        record(session, actor=actor, action=AuditAction.AUDIT_KEYS_DESTROYED,
               detail={"periods": periods})
    return periods
