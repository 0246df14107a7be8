"""The plausibility pass: run every rule (rules.plausibility) over the tickets in scope, store
what fires as findings, resolve the findings whose rule no longer fires.

In scope: tickets of configured mailboxes that are not closed, that changed since the last
pass (a ticket just closed), or that have an open finding; a closed ticket nobody touches
keeps its finding as it was. A fixed number of statements per pass, whatever the number of
tickets; inserts and resolutions go in one executemany each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from gateway.consent.references import compiled
from gateway.db import table_of
from gateway.models import Message
from gateway.settings import Settings
from mailboxes.hotline.models import Call
from mailboxes.service_levels.config import ServiceLevels, load_all
from mailboxes.service_levels.models import Finding
from mailboxes.service_levels.rules.plausibility import Context, TicketFacts, firing
from mailboxes.tickets.models import Article, ArticleKind, Ticket

LATE_COMMIT_MARGIN = timedelta(minutes=10)

# Ticket ids with a callback due and no number to call. The hotline (mailboxes.hotline)
# stores calls; each function here reads its data. Empty: the rule never fires.
CallbacksWithoutNumber = Callable[[Session, datetime], set[int]]
CALLBACK_SOURCES: list[CallbacksWithoutNumber] = []

_findings = table_of(Finding)
_RESOLVE = (update(_findings).where(_findings.c.id == bindparam("fid"))
            .values(resolved_at=bindparam("at")))


@dataclass
class PlausibilityResult:
    checked: int = 0
    new: int = 0
    resolved: int = 0


def _hotline_callbacks(session: Session, now: datetime) -> set[int]:
    """Calls with a callback due and an empty number token (a call stored without a number;
    the hotline's own form requires one, so this is the safety net for other ways in)."""
    return set(session.execute(select(Call.ticket_id).where(
        Call.callback_due_at.is_not(None), Call.callback_done_at.is_(None),
        Call.number_token == b"")).scalars())


CALLBACK_SOURCES.append(_hotline_callbacks)


def _patterns(levels: ServiceLevels, settings: Settings) -> tuple[re.Pattern[str], ...]:
    texts = levels.case_reference_patterns or (settings.consent.case_reference_pattern,)
    return tuple(compiled(p) for p in texts)


def run_plausibility_pass(session: Session, settings: Settings, *, now: datetime,
                          last_run_at: datetime | None) -> PlausibilityResult:
    result = PlausibilityResult()
    levels = load_all(session)
    if not levels:
        return result
    # The first pass ever looks at every ticket, closed ones too.
    since = (last_run_at - LATE_COMMIT_MARGIN if last_run_at is not None
             else datetime.min.replace(tzinfo=now.tzinfo))
    open_finding = exists().where(_findings.c.ticket_id == Ticket.id,
                                  _findings.c.resolved_at.is_(None))
    has_reply = exists().where(Article.ticket_id == Ticket.id,
                               Article.kind == ArticleKind.REPLY.value)
    # Core rows through the session's connection: ORM loading of 100,000 rows would cost
    # twice the query.
    tickets = session.connection().execute(
        select(Ticket.id, Ticket.mailbox_id, Ticket.state, Ticket.channel, Ticket.updated_at,
               Ticket.requester, has_reply)
        .where(Ticket.mailbox_id.in_(list(levels)),
               or_(Ticket.state != "closed", Ticket.updated_at >= since, open_finding))).all()
    # Case references of replies, everywhere (a reference shared between two requesters may
    # span mailboxes): one statement.
    refs: dict[int, set[str]] = defaultdict(set)
    requesters_of: dict[str, set[str]] = defaultdict(set)
    for tid, ref, requester in session.connection().execute(
            select(Article.ticket_id, Message.case_reference, Ticket.requester)
            .join(Message, Message.queue_id == Article.queue_id)
            .join(Ticket, Ticket.id == Article.ticket_id)
            .where(Article.kind == ArticleKind.REPLY.value,
                   Message.case_reference.is_not(None))):
        if ref:
            refs[tid].add(ref)
            requesters_of[ref].add(requester.lower())
    no_number: set[int] = set()
    for source in CALLBACK_SOURCES:
        no_number |= source(session, now)
    contexts = {box: Context(now=now, untouched_days=lv.untouched_days,
                             case_reference_patterns=_patterns(lv, settings))
                for box, lv in levels.items()}
    fired: dict[tuple[int, str], tuple[int, str]] = {}
    for tid, box, state, channel, updated_at, _requester, replied in tickets:
        own = tuple(sorted(refs.get(tid, ())))
        facts = TicketFacts(
            ticket_id=tid, mailbox_id=box, state=state, channel=channel,
            updated_at=updated_at, has_reply=bool(replied), reply_case_references=own,
            case_reference_shared=any(len(requesters_of[r]) > 1 for r in own),
            callback_without_number=tid in no_number)
        for rule in firing(facts, contexts[box]):
            fired[(tid, rule.name)] = (box, rule.reason)
    result.checked = len(tickets)
    in_scope = {t[0] for t in tickets}
    known: dict[tuple[int, str], int] = {}
    to_resolve = []
    for fid, tid, rule in session.connection().execute(
            select(_findings.c.id, _findings.c.ticket_id, _findings.c.rule)
            .where(_findings.c.resolved_at.is_(None))):
        known[(tid, rule)] = fid
        if tid in in_scope and (tid, rule) not in fired:
            to_resolve.append({"fid": fid, "at": now})
    new = [{"ticket_id": tid, "mailbox_id": box, "rule": rule, "reason": reason,
            "first_seen_at": now, "resolved_at": None}
           for (tid, rule), (box, reason) in sorted(fired.items()) if (tid, rule) not in known]
    if new:
        session.execute(insert(_findings), new)
    if to_resolve:
        session.execute(_RESOLVE, to_resolve)
    result.new, result.resolved = len(new), len(to_resolve)
    return result
