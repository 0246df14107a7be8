"""Tickets: every message filed into a shared mailbox becomes one, or joins one.

Content (the subject, a note's text) is sealed; what the list filters on in SQL stays clear:
the requester's address, the dates, the state, the assignee, and the subject's words only
as blind-index tokens (mailboxes.tickets.search).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class TicketState(StrEnum):
    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"
    CLOSED = "closed"


class Channel(StrEnum):
    MAIL = "mail"
    PHONE = "phone"    # opened by a call on the hotline (mailboxes.hotline)


class ArticleKind(StrEnum):
    INBOUND = "inbound"    # a message filed into the mailbox
    REPLY = "reply"        # a reply submitted into the outbound queue
    RECEIPT = "receipt"    # the automatic receipt (Eingangsbestätigung)
    NOTE = "note"          # an internal note; never leaves the office


class TicketCounter(Base):
    """The last ticket number given out in a year; taken with a row lock so numbers have no
    gaps and no duplicates (mailboxes.tickets.numbers)."""

    __tablename__ = "ticket_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True)
    # Who wrote in (the From address, lower-cased): replies go there, and only this address
    # may attach mail to the ticket by quoting its number.
    requester: Mapped[str] = mapped_column(String(320))
    subject_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # A ticket opened by mail that quoted another ticket's number from another address.
    linked_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # How it came in: mail or a call on the hotline.
    channel: Mapped[str] = mapped_column(String(8), default=Channel.MAIL.value,
                                         server_default=Channel.MAIL.value)
    # A duplicate merged into another ticket: closed, and mail threading into it lands there.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True)

    __table_args__ = (
        # Newest first within a mailbox, filtered or not: the list walks one of these.
        Index("ix_tickets_mailbox", "mailbox_id", "id"),
        Index("ix_tickets_mailbox_state", "mailbox_id", "state", "id"),
        Index("ix_tickets_mailbox_assignee", "mailbox_id", "assignee_id", "id"),
        Index("ix_tickets_mailbox_requester", "mailbox_id", "requester"),
    )


class SubjectToken(Base):
    """One whole word of a ticket's subject, as a keyed hash (blind index)."""

    __tablename__ = "ticket_subject_tokens"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           primary_key=True)
    token: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)

    __table_args__ = (Index("ix_ticket_subject_tokens_token", "token", "ticket_id"),)


class Article(Base):
    """One entry of a ticket: a message in, a reply out, a receipt, a note."""

    __tablename__ = "ticket_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who: a staff user's name for replies and notes, the sender's address for mail in.
    author: Mapped[str] = mapped_column(String(320))
    # Mail in: the filed copy (sealed there).
    stored_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("mailbox_messages.id", ondelete="SET NULL"), nullable=True)
    # Replies and receipts: the outbound queue message; its state is the outcome.
    queue_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # The RFC 5322 Message-ID (without angle brackets) we received or sent: threading.
    rfc_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A note's text, sealed.
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (Index("ix_ticket_articles_rfc_message_id", "rfc_message_id"),)


class HistoryEntry(Base):
    """Every change to a ticket: who, when, what (never content)."""

    __tablename__ = "ticket_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(32))
    # JSON: e.g. {"from": "new", "to": "open"}.
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)

    # The SLA pass reads what changed since its last run (mailboxes.service_levels.sla_pass).
    __table_args__ = (Index("ix_ticket_history_at", "at"),)
