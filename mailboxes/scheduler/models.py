"""The scheduler's job rows (mailboxes.scheduler.runner)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class ScheduledJob(Base):
    """One named job of the scheduler: when it is due next. A run claims the row by moving
    ``next_due_at`` forward in its own transaction, so each due run happens once."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_run_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
