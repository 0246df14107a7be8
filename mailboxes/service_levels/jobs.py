"""The service-level jobs of the scheduler (mailboxes.scheduler.jobs)."""

from __future__ import annotations

from mailboxes.scheduler.jobs import Job

# Filled in as the passes land: the SLA pass and the plausibility pass.
JOBS: list[Job] = []
