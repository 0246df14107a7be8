"""The registry of the scheduler's named jobs: what runs, and how often.

The worker process runs ONE scheduler (mailboxes.scheduler.runner). It asks this module for
its jobs and runs each one when due; with several worker processes (on PostgreSQL) each due
run happens once, because a run first claims the job's row in ``scheduled_jobs`` by a
conditional update in the same transaction as the job's work.

To add a job (e.g. the follow-up digest of mailboxes/followups):

1. In your package, a module (e.g. ``mailboxes/followups/jobs.py``) defining::

       from mailboxes.scheduler.jobs import Job, JobContext

       def send_digest(ctx: JobContext) -> None:
           ...  # use ctx.session (the transaction is the scheduler's: do not commit),
                # ctx.now, ctx.settings, ctx.master_key (for notices), ctx.actor (audit)

       JOBS = [Job("followup-digest", send_digest, daily_at=time(7, 0))]

2. Add that module's dotted name to ``JOB_MODULES`` below.

``daily_at`` is wall-clock time in Europe/Berlin (the office's time, DST included);
``every`` is a fixed interval. A job that raises is rolled back whole (nothing half-stored,
its claim included) and is tried again at the scheduler's next tick.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.settings import Settings

OFFICE_TIME = ZoneInfo("Europe/Berlin")

# Modules that define ``JOBS: Sequence[Job]``; the scheduler runs them all.
JOB_MODULES: tuple[str, ...] = (
    "mailboxes.service_levels.jobs",
    "mailboxes.hotline.jobs",
    "gateway.portal.pickup.jobs",
)


@dataclass(frozen=True)
class JobContext:
    """What a job gets: one transaction (owned by the scheduler), the time, the settings."""

    session: Session
    settings: Settings
    master_key: MasterKey
    now: datetime
    actor: str
    # When this job last ran (None: never); a job that works on what changed since reads it.
    last_run_at: datetime | None = None


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[JobContext], None]
    every: timedelta | None = None
    daily_at: time | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.daily_at is None):
            raise ValueError(f"job {self.name!r}: give exactly one of every= and daily_at=")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError(f"job {self.name!r}: every= must be positive")

    def first_due(self, now: datetime) -> datetime:
        """When a job never run before is first due: at once, or today's time of a daily
        job (at once if that has passed today)."""
        if self.daily_at is None:
            return now
        today = now.astimezone(OFFICE_TIME).date()
        return datetime.combine(today, self.daily_at, OFFICE_TIME).astimezone(now.tzinfo)

    def next_due(self, after: datetime) -> datetime:
        """The first due time strictly after ``after`` (an aware UTC time)."""
        if self.every is not None:
            return after + self.every
        assert self.daily_at is not None
        local = after.astimezone(OFFICE_TIME)
        day = local.date()
        while True:
            candidate = datetime.combine(day, self.daily_at, OFFICE_TIME).astimezone(
                after.tzinfo)
            if candidate > after:
                return candidate
            day += timedelta(days=1)


def all_jobs(modules: Sequence[str] = JOB_MODULES) -> list[Job]:
    """Every registered job; two jobs with one name are a programming error."""
    jobs: list[Job] = []
    for name in modules:
        jobs.extend(importlib.import_module(name).JOBS)
    names = [job.name for job in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"scheduler jobs registered twice: {', '.join(duplicates)}")
    return jobs
