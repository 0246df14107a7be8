"""The scheduler: one thread in the worker process that runs the registered jobs when due.

Each due run happens once, also with several worker processes on one PostgreSQL database:
a run is one transaction that first claims the job's row (``SELECT ... FOR UPDATE SKIP
LOCKED``, then a conditional update moving ``next_due_at`` forward) and then does the job's
work. Another process skips the locked row, or finds it no longer due. On SQLite the write
lock serialises the claims the same way. A job that raises is rolled back with its claim
and tried again at the next tick; the other jobs run as planned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope, table_of
from gateway.periodic import PeriodicJob
from gateway.settings import Settings
from mailboxes.scheduler.jobs import Job, JobContext, all_jobs
from mailboxes.scheduler.models import ScheduledJob

log = logging.getLogger(__name__)
_jobs = table_of(ScheduledJob)


class Scheduler(PeriodicJob):
    """Looks every ``interval`` seconds for due jobs; ``tick`` is one look (tests call it)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 master_key: MasterKey, clock: Clock, *, owner: str, interval: float = 30,
                 jobs: Sequence[Job] | None = None) -> None:
        super().__init__("scheduler", interval, join_timeout=30)
        self.settings = settings
        self.sessions = sessions
        self.master_key = master_key
        self.clock = clock
        self.owner = owner
        self.jobs = list(all_jobs() if jobs is None else jobs)

    def _register(self, now: datetime) -> None:
        with session_scope(self.sessions) as session:
            known = set(session.execute(select(_jobs.c.name)).scalars())
        for job in self.jobs:
            if job.name in known:
                continue
            try:
                with session_scope(self.sessions) as session:
                    session.execute(insert(_jobs), {"name": job.name,
                                                    "next_due_at": job.first_due(now)})
            except IntegrityError:
                pass  # another worker process registered it at the same moment

    def _run_job(self, job: Job, now: datetime) -> bool:
        with session_scope(self.sessions) as session:
            row = session.execute(
                select(_jobs.c.last_run_at)
                .where(_jobs.c.name == job.name, _jobs.c.next_due_at <= now)
                .with_for_update(skip_locked=True)).first()
            if row is None:
                return False
            claimed = session.execute(
                update(_jobs).where(_jobs.c.name == job.name, _jobs.c.next_due_at <= now)
                .values(next_due_at=job.next_due(now), last_run_at=now,
                        last_run_by=self.owner))
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            job.run(JobContext(session=session, settings=self.settings,
                               master_key=self.master_key, now=now, actor=self.owner,
                               last_run_at=row.last_run_at))
        return True

    def tick(self) -> list[str]:
        """Run every due job once; the names of those that ran."""
        now = self.clock()
        ran: list[str] = []
        try:
            self._register(now)
        except SQLAlchemyError as exc:
            log.warning("scheduler: database unavailable: %s", type(exc).__name__)
            return ran
        for job in self.jobs:
            try:
                if self._run_job(job, now):
                    ran.append(job.name)
            except Exception:
                log.exception("scheduler: job %s failed; rolled back, tried again at the "
                              "next tick", job.name)
        return ran

    def run_once(self) -> None:
        self.tick()
