"""What the pages show of service levels: a mailbox's open findings and escalations, the
marks of a page of tickets, one ticket's deadlines. Reads only; one statement each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailboxes.service_levels.models import Escalation, Finding, TicketServiceLevel
from mailboxes.tickets.models import Ticket

LIMIT = 200


@dataclass(frozen=True)
class FindingRow:
    ticket_id: int
    number: str
    rule: str
    reason: str
    first_seen_at: datetime


@dataclass(frozen=True)
class EscalationRow:
    ticket_id: int
    number: str
    kind: str
    due_at: datetime
    escalated_at: datetime
    told: list[str]


def open_findings(session: Session, mailbox_id: int, limit: int = LIMIT) -> list[FindingRow]:
    rows = session.execute(
        select(Finding.ticket_id, Ticket.number, Finding.rule, Finding.reason,
               Finding.first_seen_at)
        .join(Ticket, Ticket.id == Finding.ticket_id)
        .where(Finding.mailbox_id == mailbox_id, Finding.resolved_at.is_(None))
        .order_by(Finding.id.desc()).limit(limit))
    return [FindingRow(*row) for row in rows]


def escalations(session: Session, mailbox_id: int, limit: int = LIMIT) -> list[EscalationRow]:
    rows = session.execute(
        select(Escalation.ticket_id, Ticket.number, Escalation.kind, Escalation.due_at,
               Escalation.escalated_at, Escalation.told)
        .join(Ticket, Ticket.id == Escalation.ticket_id)
        .where(Escalation.mailbox_id == mailbox_id)
        .order_by(Escalation.id.desc()).limit(limit))
    return [EscalationRow(tid, number, kind, due, at, json.loads(told))
            for tid, number, kind, due, at, told in rows]


def marks(session: Session, ticket_ids: Sequence[int]) -> dict[int, str]:
    """nearing/breached for the tickets of a list page that have one."""
    if not ticket_ids:
        return {}
    return {tid: mark for tid, mark in session.execute(
        select(TicketServiceLevel.ticket_id, TicketServiceLevel.mark)
        .where(TicketServiceLevel.ticket_id.in_(list(ticket_ids)),
               TicketServiceLevel.mark.is_not(None))) if mark}


@dataclass(frozen=True)
class TicketDeadlines:
    first_response_due_at: datetime | None
    first_responded_at: datetime | None
    resolution_due_at: datetime | None
    resolved_at: datetime | None
    paused_since: datetime | None
    mark: str | None
    findings: list[str]


def ticket_deadlines(session: Session, ticket_id: int) -> TicketDeadlines | None:
    row = session.get(TicketServiceLevel, ticket_id)
    findings = list(session.execute(select(Finding.rule).where(
        Finding.ticket_id == ticket_id, Finding.resolved_at.is_(None))
        .order_by(Finding.id)).scalars())
    if row is None:
        return None if not findings else TicketDeadlines(None, None, None, None, None, None,
                                                          findings)
    return TicketDeadlines(row.first_response_due_at, row.first_responded_at,
                           row.resolution_due_at, row.resolved_at, row.paused_since,
                           row.mark, findings)
