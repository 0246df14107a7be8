"""Tables of the hotline: topics, calls, callback attempts, follow-ups, links, digests.

Content (the caller's name and number, the case reference, notes) is sealed; what the lists
sort and filter on in SQL stays clear: due times, the holder, the caller's role and topic,
and the number only as a blind-index token (mailboxes.hotline.phone), so a second call from
the same number finds the first without the database holding the number.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class CallerRole(StrEnum):
    CHILDMINDER = "childminder"
    PARENT = "parent"
    INSTITUTION = "institution"
    OTHER = "other"


class Topic(Base):
    """One entry of a mailbox's topic catalogue; calls are filed under one."""

    __tablename__ = "mailbox_topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))

    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)


class Call(Base):
    """A call taken on the hotline: opened a ticket of its own or was added to one."""

    __tablename__ = "hotline_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    taken_by: Mapped[str] = mapped_column(String(320))
    caller_role: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # JSON {"name", "number", "case_ref"}, sealed with the call's id in the context.
    details_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    number_token: Mapped[bytes] = mapped_column(LargeBinary(16), index=True)
    # A callback is wanted by then; cleared (done_at set) once the caller was reached.
    callback_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    callback_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_hotline_calls_callback_due", "callback_due_at"),)


class CallbackAttempt(Base):
    __tablename__ = "hotline_callback_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("hotline_calls.id", ondelete="CASCADE"),
                                         index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(320))
    reached: Mapped[bool] = mapped_column(Boolean)
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class FollowUp(Base):
    """A ticket's follow-up (Wiedervorlage): on ``due_on`` it comes back to its holder."""

    __tablename__ = "ticket_follow_ups"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           primary_key=True, autoincrement=False)
    due_on: Mapped[date] = mapped_column(Date)
    # The ticket's assignee when it was set, or whoever set it on an unassigned ticket.
    holder_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True)
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    set_by: Mapped[str] = mapped_column(String(320))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_ticket_follow_ups_holder_due", "holder_id", "due_on"),
                      Index("ix_ticket_follow_ups_due", "due_on"))


class TicketLink(Base):
    """Two tickets of one mailbox that belong together; stored once, lower id first."""

    __tablename__ = "ticket_links"

    low_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                        primary_key=True)
    high_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(320))


class DigestSent(Base):
    """The follow-up digest went to this user on this day: inserted before the mail is
    queued, in the same transaction, so two workers send it once."""

    __tablename__ = "follow_up_digests"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
