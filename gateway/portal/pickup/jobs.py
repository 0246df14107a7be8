"""Pickup's job of the one scheduler (mailboxes.scheduler): expire items past their time,
telling the caseworker of each unread one (gateway.portal.pickup.items.expire_due)."""

from __future__ import annotations

from datetime import timedelta

from gateway.portal.pickup.items import expire_due
from mailboxes.scheduler.jobs import Job, JobContext

EVERY = timedelta(minutes=15)


def expire_pickup_items(ctx: JobContext) -> None:
    expire_due(ctx.session, ctx.master_key, ctx.settings, now=ctx.now, actor=ctx.actor)


JOBS = [Job("pickup-expiry", expire_pickup_items, every=EVERY)]
