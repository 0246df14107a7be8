"""The quarantine's tables: admins' decisions on quarantined messages, and re-scan results.

Kept apart from the message row so that the queue's hot path never reads them, and so that
a message's quarantine history outlives any later state change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class DecisionAction(StrEnum):
    RELEASE_APPROVAL = "release-approval"
    RELEASE = "release"
    # A second approval whose re-scan was not clean: it clears the approvals given so far,
    # so a release after a new signature update needs two fresh approvals.
    RELEASE_REFUSED = "release-refused"
    DELETE = "delete"


class RescanVerdict(StrEnum):
    CLEAN = "clean"
    NOT_CLEAN = "not-clean"
    # The stored content could not be opened (another master key, damaged storage).
    UNREADABLE = "unreadable"


def _enum(cls: type[StrEnum], name: str) -> Enum:
    # Plain strings like gateway.models' enums: a new value needs no ALTER TYPE.
    return Enum(cls, name=name, native_enum=False, length=16,
                values_callable=lambda e: [m.value for m in e])


class QuarantineDecision(Base):
    """One admin's decision on a quarantined message; rows are only ever added."""

    __tablename__ = "quarantine_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    action: Mapped[DecisionAction] = mapped_column(_enum(DecisionAction, "quarantine_action"))
    admin: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    # The four-eyes record is worthless without the why; the database refuses it too.
    __table_args__ = (CheckConstraint("length(trim(reason)) > 0",
                                      name="ck_quarantine_decisions_reason"),)


class QuarantineRescan(Base):
    """The result of scanning a held or quarantined message's stored content again."""

    __tablename__ = "quarantine_rescans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    verdict: Mapped[RescanVerdict] = mapped_column(_enum(RescanVerdict, "rescan_verdict"))
    # The scanner's words (signature name, "no virus found"); never message content.
    detail: Mapped[str] = mapped_column(Text)
