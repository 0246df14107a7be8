"""Plausibility rules (as the Rhein-Sieg audit asks: catch errors where they happen).

Each rule is a name, a reason and a pure check over one ticket's facts and the pass's context.
None blocks work: a firing rule becomes a finding the mailbox's lead sees, resolved by the pass
once the rule no longer fires.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class TicketFacts:
    ticket_id: int
    mailbox_id: int
    state: str
    channel: str
    updated_at: datetime
    has_reply: bool
    # Case references (normalised, as the consent gate stored them) of the ticket's replies.
    reply_case_references: tuple[str, ...] = ()
    # A case reference of this ticket is also on a ticket of another requester.
    case_reference_shared: bool = False
    # A callback is due on this ticket and its call has no number to call.
    callback_without_number: bool = False


@dataclass(frozen=True)
class Context:
    now: datetime
    untouched_days: int
    case_reference_patterns: Sequence[re.Pattern[str]] = field(default_factory=tuple)


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    fires: Callable[[TicketFacts, Context], bool]


def _closed_without_reply(t: TicketFacts, c: Context) -> bool:
    # A call is answered on the phone; a mail ticket closed with no reply never was.
    return t.state == "closed" and t.channel == "mail" and not t.has_reply


def _foreign_case_reference(t: TicketFacts, c: Context) -> bool:
    return any(not any(p.fullmatch(ref) for p in c.case_reference_patterns)
               for ref in t.reply_case_references)


def _untouched(t: TicketFacts, c: Context) -> bool:
    return t.state != "closed" and t.updated_at <= c.now - timedelta(days=c.untouched_days)


RULES: tuple[Rule, ...] = (
    Rule("closed-without-reply", "the ticket was closed but never got a reply",
         _closed_without_reply),
    Rule("case-reference-format", "a reply names a case reference in a format the office "
         "does not use", _foreign_case_reference),
    Rule("callback-without-number", "a callback is due but the call has no number",
         lambda t, c: t.callback_without_number),
    Rule("untouched", "nobody has touched the open ticket for the configured number of days",
         _untouched),
    Rule("case-reference-two-subjects", "a case reference of this ticket is also used on a "
         "ticket of another requester", lambda t, c: t.case_reference_shared),
)
RULE_NAMES = tuple(r.name for r in RULES)


def firing(facts: TicketFacts, context: Context) -> list[Rule]:
    return [rule for rule in RULES if rule.fires(facts, context)]
