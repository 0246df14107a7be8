"""SLA status of one deadline: ok, nearing, breached (or met, paused); pure.

``nearing_until`` is computed once per mailbox and pass: the time by which "warning" business
minutes from now have passed (add_business_time(now, warning)). A deadline due at or before
it, but after now, is nearing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"


class Status(StrEnum):
    OK = "ok"
    NEARING = "nearing"
    BREACHED = "breached"
    MET = "met"          # done in time
    LATE = "late"        # done, but after the deadline
    PAUSED = "paused"    # waiting on the citizen: no deadline runs


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


def deadline_status(due_at: datetime | None, done_at: datetime | None, *, now: datetime,
                    nearing_until: datetime) -> Verdict:
    if done_at is not None:
        if due_at is not None and done_at > due_at:
            return Verdict(Status.LATE, "done after the deadline")
        return Verdict(Status.MET, "done in time")
    if due_at is None:
        return Verdict(Status.PAUSED, "the ticket waits on the citizen; the clock is stopped")
    if now >= due_at:
        return Verdict(Status.BREACHED, "the deadline has passed without it being done")
    if due_at <= nearing_until:
        return Verdict(Status.NEARING, "less than the warning time is left")
    return Verdict(Status.OK, "in time")


def mark(first: Status, resolution: Status) -> str | None:
    """What the ticket list shows: the worse of the two open deadlines."""
    statuses = {first, resolution}
    if Status.BREACHED in statuses:
        return Status.BREACHED.value
    if Status.NEARING in statuses:
        return Status.NEARING.value
    return None
