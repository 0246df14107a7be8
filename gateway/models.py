"""The gateway's tables: the queue, its recipients, sealed content, the audit chain, staff."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MessageState(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    DELIVERED = "delivered"
    HELD = "held"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    FAILED = "failed"


# States a worker may pick up.
RUNNABLE_STATES = (MessageState.RECEIVED, MessageState.DEFERRED)
FINAL_STATES = (MessageState.DELIVERED, MessageState.REJECTED, MessageState.FAILED)


class HoldKind(StrEnum):
    """What a held message waits for. Set while it is held, cleared when it leaves."""

    KEY_MISSING = "key_missing"  # a recipient's policy asks for a key nobody has approved
    CONSENT = "consent"  # no release from confidentiality covers it (or it names none)
    STATUTORY_APPROVAL = "statutory_approval"  # a transfer on a legal basis: a second person


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class RecipientState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _enum(cls: type[StrEnum], name: str, length: int = 16) -> Enum:
    # Stored as plain strings (no native ENUM type), so adding a state needs no ALTER TYPE.
    return Enum(cls, name=name, native_enum=False, length=length,
                values_callable=lambda e: [m.value for m in e])


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(32), unique=True)
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "direction"))
    state: Mapped[MessageState] = mapped_column(_enum(MessageState, "message_state"))
    mail_from: Mapped[str] = mapped_column(String(320))
    peer: Mapped[str] = mapped_column(String(100), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    auth_user: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Scans clamd took and then dropped or hung on (gateway.pipeline.stages.scan).
    scan_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Why the message is in its state (the last outcome's reason); never message content.
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the stages established (crypto facts: algorithm, keys, signer, verdict), as JSON.
    facts: Mapped[str | None] = mapped_column(Text, nullable=True)
    # While held: what it waits for (the reason says it in words, for people).
    hold_kind: Mapped[HoldKind | None] = mapped_column(_enum(HoldKind, "hold_kind", 32),
                                                       nullable=True)
    # Outbound reports: the case (Aktenzeichen) the consent gate found, normalised as
    # gateway.policy.consent.normalise_case does, so a case's reports are found by equality.
    case_reference: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)

    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="message", order_by="Recipient.id", cascade="all, delete-orphan"
    )
    content: Mapped[SealedContent] = relationship(
        back_populates="message", cascade="all, delete-orphan", uselist=False
    )

    __table_args__ = (Index("ix_messages_runnable", "state", "next_attempt_at"),
                      # "Held messages of kind X, oldest first": only held rows have a kind.
                      Index("ix_messages_hold_kind", "hold_kind", "received_at"))


class Recipient(Base):
    __tablename__ = "message_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[RecipientState] = mapped_column(_enum(RecipientState, "recipient_state"))
    # The last answer of the next hop, or the reason of a local failure.
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    message: Mapped[Message] = relationship(back_populates="recipients")

    __table_args__ = (UniqueConstraint("message_id", "address"),)


class SealedContent(Base):
    """The raw message as received, sealed with a per-message key (crypto.at_rest)."""

    __tablename__ = "message_content"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)

    message: Mapped[Message] = relationship(back_populates="content")


class AuditEntry(Base):
    """One link of the append-only, hash-chained audit trail (gateway.audit)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    queue_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # Canonical JSON of the decision's facts and reasons; never message content.
    detail: Mapped[str] = mapped_column(Text)
    # The personal part (addresses, names, peer, a person as actor), sealed under the key of
    # the entry's retention period (gateway.audit.keys); None when the entry has none. The
    # hash covers this blob, never the plaintext, so destroying the key keeps the chain whole.
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditKey(Base):
    """The data key of one retention period (a calendar month) of the audit trail, wrapped
    with the master key. Destroying it (``wrapped`` = None) deletes that period's personal
    data for good."""

    __tablename__ = "audit_keys"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditHead(Base):
    """A single row naming the chain's last link; its row lock orders concurrent appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class StaffUser(Base):
    """Staff who may submit mail (SMTP AUTH on the submission listener)."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # May approve partner keys and manage the key directory through the admin API.
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # --- admin console, users (issue 16, migration 0024): the last completed web login.
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    addresses: Mapped[list[StaffAddress]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="StaffAddress.address")


class StaffAddress(Base):
    """An envelope sender a staff user may submit with. Several users may share one (a
    team's function address); a user with none cannot submit at all."""

    __tablename__ = "staff_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))

    user: Mapped[StaffUser] = relationship(back_populates="addresses")

    __table_args__ = (UniqueConstraint("user_id", "address"),)


# --- admin console: indexes of the transfer search and the audit viewer (migration 0021) -------
# Addresses are stored as given and searched case-insensitively; each index also carries the
# message id, so "this address's messages, newest first, one page" is one index range.
# (gateway.transfers.search, benchmarks/console_transfers.py)
Index("ix_messages_sender", func.lower(Message.mail_from), Message.id)
Index("ix_message_recipients_address", func.lower(Recipient.address), Recipient.message_id)
Index("ix_messages_received_at", Message.received_at)
# The audit viewer's filters by action and by date, newest first (gateway.audit.browse).
Index("ix_audit_log_action", AuditEntry.action, AuditEntry.seq)
Index("ix_audit_log_at", AuditEntry.at)
