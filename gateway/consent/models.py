"""Release records: a release, its versions, the sealed scans, statutory approvals.

Versions are append-only. A change (a narrower scope, a later end, a revocation) is a new
row with the next version number; nothing is updated in place, so the history of what was
consented to, and when, stays readable for the data-protection officer.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime

# The releases refer to the shared mailboxes' table; importing it here puts it on the
# metadata wherever the consent tables are used.
from mailboxes import models as _mailbox_models  # noqa: F401


class ConsentRelease(Base):
    """The identity of a release; what it says is in its versions."""

    __tablename__ = "consent_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The shared mailbox whose case this is (migration 0023): its leads and agents manage the
    # release in the console (admin_ui.security.rights.consent_scope). Set when it is
    # recorded there; None for releases recorded before 0023, by the CLI or the API: in the
    # console only admins see those, and give them to a mailbox (records.assign_mailbox).
    # No ON DELETE: a mailbox whose team holds releases is not to vanish with them (and
    # SQLite reflects no ON DELETE of a column added in place).
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id"), nullable=True,
                                                   index=True)


class ConsentDocument(Base):
    """The signed release form (a scan), sealed with the master key."""

    __tablename__ = "consent_documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    # Of the plaintext: lets an auditor match a paper original without opening the seal.
    sha256: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(255))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentVersion(Base):
    __tablename__ = "consent_release_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("consent_releases.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    case_ref: Mapped[str] = mapped_column(String(200))
    # normalise_case(case_ref): how held messages and look-ups find a case's releases.
    case_key: Mapped[str] = mapped_column(String(200), index=True)
    # The personal part, sealed with the master key like message content and bound to
    # (release_id, version): JSON {data_subjects, grantor_name, purpose}. Names of children
    # and parents never lie in the database in clear; the case reference does, for look-ups.
    sealed_personal: Mapped[bytes] = mapped_column(LargeBinary)
    grantor_role: Mapped[str] = mapped_column(String(20))
    # JSON lists: the categories, the recipients ({kind, value}).
    categories: Mapped[str] = mapped_column(Text)
    recipients: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("consent_documents.id"),
                                                    nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Why this version was made (for the first: how the release was obtained, if noted).
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint("release_id", "version"),
        CheckConstraint("valid_from <= valid_until", name="ck_consent_versions_dates"),
    )


class StatutoryApproval(Base):
    """A second person's approval of a transfer on a legal basis instead of consent."""

    __tablename__ = "consent_statutory_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"),
                                            index=True)
    approver: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("message_id", "approver"),
        CheckConstraint("length(trim(reason)) > 0", name="ck_statutory_approvals_reason"),
    )
