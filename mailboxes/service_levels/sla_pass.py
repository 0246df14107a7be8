"""The SLA pass: bring the tickets' deadlines up to date, mark them, escalate breaches once.

1. Deadlines: tickets whose history changed since the last pass (with a margin for
   transactions that committed late), and open tickets of a configured mailbox that have no
   deadlines yet (new, or the mailbox's hours changed), are computed again from their history
   (mailboxes.service_levels.deadlines), in chunks.
2. Marks: every open deadline is judged by the pure rule (rules.sla) against the clock; the
   rows whose mark changed are updated in one executemany.
3. Escalations: a deadline that is breached and has no escalation yet gets one (the unique
   constraint on ticket and kind keeps it once), is audited, and its mailbox's escalation
   contacts get one notice mail per pass listing their mailbox's new breaches.

The statements: a fixed handful per pass plus one chunk of three for each 500 tickets whose
history changed; the number of open tickets costs rows, not statements.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from gateway.db import table_of
from mailboxes.service_levels.business_hours import add_business_time
from mailboxes.service_levels.config import ServiceLevels, load_all
from mailboxes.service_levels.deadlines import RELEVANT_ACTIONS, Event, deadlines
from mailboxes.service_levels.models import Escalation, TicketServiceLevel
from mailboxes.service_levels.rules.sla import (
    FIRST_RESPONSE,
    RESOLUTION,
    Status,
    deadline_status,
    mark,
)
from mailboxes.tickets.models import Channel, HistoryEntry, Ticket

CHUNK = 500
# A history row written by a transaction that committed after the last pass read: it is
# found again by reading this far back.
LATE_COMMIT_MARGIN = timedelta(minutes=10)

_levels = table_of(TicketServiceLevel)
_MARK = (update(_levels).where(_levels.c.ticket_id == bindparam("tid"))
         .values(mark=bindparam("new_mark"), computed_at=bindparam("at")))


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    mailbox_id: int
    ticket_number: str
    kind: str
    due_at: datetime


@dataclass
class SlaPassResult:
    recomputed: int = 0
    marked: int = 0
    breaches: list[Breach] | None = None


def _changed_ticket_ids(session: Session, configured: Iterable[int], since: datetime | None
                        ) -> list[int]:
    boxes = list(configured)
    missing = (select(Ticket.id).outerjoin(TicketServiceLevel,
                                           TicketServiceLevel.ticket_id == Ticket.id)
               .where(Ticket.mailbox_id.in_(boxes), Ticket.state != "closed",
                      TicketServiceLevel.ticket_id.is_(None)))
    ids = set(session.execute(missing).scalars())
    if since is not None:
        changed = (select(HistoryEntry.ticket_id).join(Ticket, Ticket.id == HistoryEntry.ticket_id)
                   .where(HistoryEntry.at >= since - LATE_COMMIT_MARGIN,
                          HistoryEntry.action.in_(RELEVANT_ACTIONS),
                          Ticket.mailbox_id.in_(boxes)).distinct())
        ids.update(session.execute(changed).scalars())
    return sorted(ids)


def _recompute(session: Session, ids: Sequence[int], levels: dict[int, ServiceLevels],
               now: datetime) -> None:
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        tickets = session.execute(select(Ticket.id, Ticket.mailbox_id, Ticket.created_at,
                                         Ticket.channel)
                                  .where(Ticket.id.in_(chunk))).all()
        events: dict[int, list[Event]] = defaultdict(list)
        for tid, at, action, detail in session.execute(
                select(HistoryEntry.ticket_id, HistoryEntry.at, HistoryEntry.action,
                       HistoryEntry.detail)
                .where(HistoryEntry.ticket_id.in_(chunk),
                       HistoryEntry.action.in_(RELEVANT_ACTIONS))):
            to_state = json.loads(detail).get("to") if action == "state" and detail else None
            events[tid].append(Event(at, action, to_state))
        rows = []
        for tid, box, created, channel in tickets:
            d = deadlines(created, events[tid], levels[box],
                          answered_at_creation=channel == Channel.PHONE.value)
            rows.append({"ticket_id": tid, "mailbox_id": box,
                         "first_response_due_at": d.first_response_due_at,
                         "first_responded_at": d.first_responded_at,
                         "resolution_due_at": d.resolution_due_at,
                         "resolved_at": d.resolved_at, "paused_since": d.paused_since,
                         "mark": None, "computed_at": now})
        session.execute(delete(_levels).where(_levels.c.ticket_id.in_(chunk)))
        if rows:
            session.execute(insert(_levels), rows)


def run_sla_pass(session: Session, *, now: datetime, last_run_at: datetime | None
                 ) -> SlaPassResult:
    result = SlaPassResult(breaches=[])
    levels = load_all(session)
    if not levels:
        return result
    ids = _changed_ticket_ids(session, levels, last_run_at)
    _recompute(session, ids, levels, now)
    result.recomputed = len(ids)

    nearing_until = {box: add_business_time(lv.week, now,
                                            timedelta(minutes=lv.warning_minutes)) or now
                     for box, lv in levels.items()}
    open_rows = session.connection().execute(
        select(_levels.c.ticket_id, _levels.c.mailbox_id, _levels.c.first_response_due_at,
               _levels.c.first_responded_at, _levels.c.resolution_due_at,
               _levels.c.resolved_at, _levels.c.mark, Ticket.number)
        .join(Ticket, Ticket.id == _levels.c.ticket_id)
        .where(_levels.c.resolved_at.is_(None))).all()
    escalated = {(tid, kind) for tid, kind in session.connection().execute(
        select(Escalation.ticket_id, Escalation.kind)
        .join(TicketServiceLevel, TicketServiceLevel.ticket_id == Escalation.ticket_id)
        .where(TicketServiceLevel.resolved_at.is_(None)))}
    changes = []
    assert result.breaches is not None
    for tid, box, first_due, first_done, res_due, res_done, old_mark, number in open_rows:
        until = nearing_until.get(box, now)
        first = deadline_status(first_due, first_done, now=now, nearing_until=until)
        resolution = deadline_status(res_due, res_done, now=now, nearing_until=until)
        new_mark = mark(first.status, resolution.status)
        if new_mark != old_mark:
            changes.append({"tid": tid, "new_mark": new_mark, "at": now})
        for kind, verdict, due in ((FIRST_RESPONSE, first, first_due),
                                   (RESOLUTION, resolution, res_due)):
            if verdict.status == Status.BREACHED and (tid, kind) not in escalated:
                assert due is not None
                result.breaches.append(Breach(tid, box, number, kind, due))
    if changes:
        session.execute(_MARK, changes)
    result.marked = len(changes)
    return result

