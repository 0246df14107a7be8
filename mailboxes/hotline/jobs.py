"""The hotline's job of the one scheduler (mailboxes.scheduler): the morning digest."""

from __future__ import annotations

from datetime import time

from mailboxes.hotline.digest import send_digests
from mailboxes.scheduler.jobs import Job, JobContext

DIGEST_AT = time(7, 0)


def send_follow_up_digest(ctx: JobContext) -> None:
    send_digests(ctx.session, ctx.master_key, ctx.settings, now=ctx.now, actor=ctx.actor)


JOBS = [Job("follow-up-digest", send_follow_up_digest, daily_at=DIGEST_AT)]
