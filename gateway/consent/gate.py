"""The consent gate over the database: the facts of one recipient, the case's releases,
the decision. The pipeline stage and the dry run (CLI, API) both ask here, so a caseworker
checking beforehand gets exactly the answer the message will get."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from gateway.consent.classify import canonical_category
from gateway.consent.records import releases_for_case
from gateway.keydir.partners import partner_for
from gateway.policy.consent import Decision, MessageFacts, ReleaseTerms, decide, local_date
from gateway.settings import ConsentSettings


def recipient_facts(session: Session, *, case: str, category: str, recipient: str,
                    sender: str, legal_basis: str | None = None,
                    justification: str | None = None,
                    approvals: Sequence[str] = ()) -> MessageFacts:
    partner = partner_for(session, recipient)
    return MessageFacts(case=case, category=category, recipient_address=recipient.strip(),
                        recipient_partner=partner.name if partner else None,
                        statutory_basis=legal_basis, justification=justification,
                        approvals=tuple(approvals), sender=sender)


def evaluate(facts: MessageFacts, releases: Sequence[ReleaseTerms], settings: ConsentSettings,
             now: datetime) -> Decision:
    return decide(facts, releases, now, ZoneInfo(settings.timezone),
                  categories=settings.categories)


def dry_run(session: Session, settings: ConsentSettings, *, case: str, category: str,
            recipient: str, on: date | None, now: datetime) -> Decision:
    """What a report for ``case``/``category`` to ``recipient`` would meet on day ``on``.

    A day other than today is judged at noon of that day in the office's zone: the validity
    dates are whole days, and noon is clear of any DST change.
    """
    zone = ZoneInfo(settings.timezone)
    at = now if on is None or on == local_date(now, zone) else datetime.combine(
        on, time(12), tzinfo=zone)
    facts = recipient_facts(session, case=case,
                            category=canonical_category(category, settings) or category,
                            recipient=recipient, sender="")
    return evaluate(facts, releases_for_case(session, case), settings, at)
