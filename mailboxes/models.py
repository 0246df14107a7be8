"""Shared mailboxes (Sammelpostfach), their members, and what was delivered into them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
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

# The ticket tables refer to these; importing them here puts every mailbox table on the
# metadata wherever the mailbox models are (migrations, tests).
from mailboxes.hotline import models as _hotline_models  # noqa: F401
from mailboxes.scheduler import models as _scheduler_models  # noqa: F401
from mailboxes.service_levels import models as _service_level_models  # noqa: F401
from mailboxes.tickets import models as _ticket_models  # noqa: F401


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Also the function address the team sends as.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    # Everything a sensitive mailbox sends outside is treated as a sensitive report.
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Whoever writes in gets a receipt (Eingangsbestätigung) with the ticket number.
    receipt_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The receipt's text; None is the default German text (mailboxes.tickets.receipts).
    receipt_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Put under every reply sent from the mailbox.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class MemberRole(StrEnum):
    LEAD = "lead"
    AGENT = "agent"


class MailboxMember(Base):
    """A staff user who works in a mailbox, as its lead or as an agent."""

    __tablename__ = "mailbox_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"),
                                         index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("mailbox_id", "user_id"),)


class StoredMessage(Base):
    """A message filed into a mailbox. Content is sealed; only envelope facts are clear.

    The copy lives on its own: deleting its queue row leaves it (``message_id`` becomes
    NULL), and its seal context is ``seal_message_id``, fixed when it was filed.
    """

    __tablename__ = "mailbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    # The queue message it came from, while that exists. Unique with the mailbox: a retried
    # delivery after a crash cannot file the same message twice.
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", name="fk_mailbox_messages_message"),
        nullable=True)
    # The queue message's id when it was filed: part of the seal context for good.
    seal_message_id: Mapped[int] = mapped_column(Integer)
    # The queue id, kept in clear so the copy can still be traced when the row is gone.
    queue_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    size: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen: Mapped[bool] = mapped_column(Boolean, default=False)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("mailbox_id", "message_id"),)
