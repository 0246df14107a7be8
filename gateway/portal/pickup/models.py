"""Tables of pickup: items and the downloads made from them (migration 0018).

The message is sealed with the item's id in the context; the link token is stored as its
SHA-256 (it is long and random, so a plain hash cannot be reversed) and the code only as a
keyed hash (it is short, so a plain hash could be tried through in seconds).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class PickupItem(Base):
    """One message waiting for one citizen."""

    __tablename__ = "pickup_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # None for an outbound message that is no ticket reply (migration 0019): the citizen's
    # answer then goes to ``sender`` as mail, and so does the expiry notice.
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True, nullable=True)
    recipient: Mapped[str] = mapped_column(String(320))
    # The outbound queue message it was made for (gateway.delivery.portal_pickup): one item
    # per message and recipient, however often the delivery step runs.
    queue_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sender: Mapped[str | None] = mapped_column(String(320), nullable=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # None while no code is issued (or after the last one was used up by a lock).
    code_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    code_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The MIME message, sealed; emptied when the item expires (the ticket keeps its reply).
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_pickup_items_expiry", "expired_at", "expires_at"),
                      UniqueConstraint("queue_id", "recipient",
                                       name="uq_pickup_items_queue_recipient"))


class PickupDownload(Base):
    """An attachment downloaded from an item: which one (its place in the message), when."""

    __tablename__ = "pickup_downloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("pickup_items.id", ondelete="CASCADE"),
                                         index=True)
    part: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
