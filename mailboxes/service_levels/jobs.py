"""The service-level jobs of the scheduler (mailboxes.scheduler.jobs): the SLA pass with its
escalations, and the plausibility pass, every few minutes."""

from __future__ import annotations

import logging
from datetime import timedelta

from mailboxes.scheduler.jobs import Job, JobContext
from mailboxes.service_levels.config import load_all
from mailboxes.service_levels.escalation import escalate
from mailboxes.service_levels.plausibility_pass import run_plausibility_pass
from mailboxes.service_levels.sla_pass import run_sla_pass

log = logging.getLogger(__name__)
SLA_PASS, PLAUSIBILITY_PASS = "sla-pass", "plausibility-pass"


def sla_job(ctx: JobContext) -> None:
    result = run_sla_pass(ctx.session, now=ctx.now, last_run_at=ctx.last_run_at)
    if result.breaches:
        escalate(ctx.session, result.breaches, levels=load_all(ctx.session),
                 settings=ctx.settings, master=ctx.master_key, actor=ctx.actor, now=ctx.now)
        log.info("SLA pass: %d deadline(s) escalated", len(result.breaches))


def plausibility_job(ctx: JobContext) -> None:
    result = run_plausibility_pass(ctx.session, ctx.settings, now=ctx.now,
                                   last_run_at=ctx.last_run_at)
    if result.new or result.resolved:
        log.info("plausibility pass: %d new finding(s), %d resolved", result.new,
                 result.resolved)


JOBS: list[Job] = [
    Job(SLA_PASS, sla_job, every=timedelta(minutes=5)),
    Job(PLAUSIBILITY_PASS, plausibility_job, every=timedelta(minutes=15)),
]
