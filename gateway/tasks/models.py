"""The table of background tasks: long operations of the staff web app (a re-scan of the
quarantine, verifying the audit chain) with their progress, result or error."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.models import UTCDateTime


class TaskState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # Left running by a process that ended (a crash, a restart): it will not go on.
    INTERRUPTED = "interrupted"


class BackgroundTask(Base):
    __tablename__ = "background_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    # The staff user's name: they (and admins) may see the task.
    started_by: Mapped[str] = mapped_column(String(255))
    # What the task was asked to do, as JSON (ids and options, never content).
    params: Mapped[str] = mapped_column(Text)
    state: Mapped[TaskState] = mapped_column(
        Enum(TaskState, name="task_state", native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]))
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The runner (host, process, instance) working on it, and when it last said so.
    owner: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # "Running tasks whose runner fell silent" at every start of a runner.
    __table_args__ = (Index("ix_background_tasks_state", "state", "heartbeat_at"),)
