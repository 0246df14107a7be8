"""Tables of service levels: a mailbox's targets, a ticket's deadlines, findings, escalations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class MailboxServiceLevel(Base):
    """A mailbox's opening hours, Land and targets (mailboxes.service_levels.config)."""

    __tablename__ = "mailbox_service_levels"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"),
                                            primary_key=True, autoincrement=False)
    land: Mapped[str] = mapped_column(String(2))
    # JSON: seven lists (Monday first) of [start, end] minutes after midnight.
    opening_hours: Mapped[str] = mapped_column(Text)
    # JSON: ISO dates the office is closed besides the public holidays.
    closing_days: Mapped[str] = mapped_column(Text)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    # A ticket is "nearing" its deadline with at most this many business minutes left.
    warning_minutes: Mapped[int] = mapped_column(Integer)
    # JSON list of user names; None: the mailbox's leads.
    escalation_contacts: Mapped[str | None] = mapped_column(Text, nullable=True)
    untouched_days: Mapped[int] = mapped_column(Integer)
    # JSON list of regular expressions; None: the consent gate's case-reference pattern.
    case_reference_patterns: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(320))


class TicketServiceLevel(Base):
    """A ticket's deadlines, kept by the SLA pass from the ticket's history (the history is
    the source; these columns make the pass and the list one indexed read)."""

    __tablename__ = "ticket_service_levels"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           primary_key=True, autoincrement=False)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"),
                                            index=True)
    # None while the ticket waits on the citizen (the clock is stopped).
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(),
                                                                   nullable=True)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # What the list shows: None (in time), "nearing" or "breached".
    mark: Mapped[str | None] = mapped_column(String(16), nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Finding(Base):
    """A plausibility rule that fired on a ticket; resolved once it no longer fires."""

    __tablename__ = "ticket_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64))
    # The rule's reason in English (pages word it from the catalogue by the rule's name).
    reason: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_ticket_findings_mailbox", "mailbox_id", "resolved_at", "id"),)


class Escalation(Base):
    """A deadline breached and told to the mailbox's escalation contacts: once per ticket and
    deadline (the unique constraint makes "once" hold with several workers too)."""

    __tablename__ = "sla_escalations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    # "first_response" or "resolution".
    kind: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # JSON list of the user names told.
    told: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("ticket_id", "kind"),
                      Index("ix_sla_escalations_mailbox", "mailbox_id", "id"))

