"""Tables of the portal's upload side (migration 0017): the submissions it queued, and the
hits its rate limits count.

A submission row holds no content (that is the sealed queue message): only the reference the
citizen was given, the queue id it became, the topic and when. A rate hit holds the client
address only as a keyed hash, and is deleted after ``portal.ip_retention_hours``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class PortalSubmission(Base):
    __tablename__ = "portal_submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Shown on the receipt; random, so one citizen's reference says nothing about another's.
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    queue_id: Mapped[str] = mapped_column(String(16), index=True)
    topic: Mapped[str] = mapped_column(String(200))
    files: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PortalRateHit(Base):
    __tablename__ = "portal_rate_hits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # HMAC-SHA256 of the client address under a key derived from the master key.
    ip_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_portal_rate_hits_ip_at", "ip_hash", "at"),
                      Index("ix_portal_rate_hits_at", "at"))
