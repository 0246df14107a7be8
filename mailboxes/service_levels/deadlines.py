"""A ticket's deadlines from its history: a pure function of the history and the targets.

The history (mailboxes.tickets.history) is the source: "created", every "state" change with
from/to, every "reply". The ticket waits on the citizen while in state waiting; that time
does not count. A reply sent from the ticket is its first response; the last move to closed
(not followed by a reopening) is its resolution. A ticket opened by a call on the hotline
was answered in that call: its first response is its creation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailboxes.service_levels.business_hours import Pause, add_business_time
from mailboxes.service_levels.config import ServiceLevels

WAITING, CLOSED = "waiting", "closed"
# History actions that change a ticket's deadlines.
RELEVANT_ACTIONS = ("created", "state", "reply")


@dataclass(frozen=True)
class Event:
    at: datetime
    action: str
    to_state: str | None = None


@dataclass(frozen=True)
class Deadlines:
    first_response_due_at: datetime | None
    first_responded_at: datetime | None
    resolution_due_at: datetime | None
    resolved_at: datetime | None
    paused_since: datetime | None


def deadlines(created_at: datetime, events: Iterable[Event], levels: ServiceLevels, *,
              answered_at_creation: bool = False) -> Deadlines:
    pauses: list[Pause] = []
    paused_since: datetime | None = None
    first_reply: datetime | None = created_at if answered_at_creation else None
    resolved: datetime | None = None
    for event in sorted(events, key=lambda e: e.at):
        if event.action == "reply" and first_reply is None:
            first_reply = event.at
        if event.action != "state" or event.to_state is None:
            continue
        if event.to_state == WAITING and paused_since is None:
            paused_since = event.at
        elif event.to_state != WAITING and paused_since is not None:
            pauses.append((paused_since, event.at))
            paused_since = None
        resolved = event.at if event.to_state == CLOSED else None
    if paused_since is not None:
        pauses.append((paused_since, None))
    first_due = add_business_time(levels.week, created_at,
                                  timedelta(minutes=levels.first_response_minutes), pauses)
    resolution_due = add_business_time(levels.week, created_at,
                                       timedelta(minutes=levels.resolution_minutes), pauses)
    return Deadlines(first_due, first_reply, resolution_due, resolved, paused_since)
