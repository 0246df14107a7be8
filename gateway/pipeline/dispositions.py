"""What each pipeline outcome does to a message: its state, who is told, DSNs, the audit action.

The driver turns whatever a stage raised into one outcome; the worker records it in one
transaction. This module is the table between the two, so that "what does a hold mean" is
answered in one place and not in a ladder of ``isinstance`` checks in the worker.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gateway.audit import AuditAction
from gateway.delivery import notices
from gateway.delivery.dsn import Failure, build_notice
from gateway.delivery.recipients import fail_recipients, failed_responses, recipient_states
from gateway.models import Direction, HoldKind, MessageState, RecipientState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Defer, Hold, Outcome, Quarantine, Reject, ScanFailed
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Disposition:
    """What one kind of outcome means for the message. The state is the outcome class's own
    (``Outcome.state``), so the two cannot disagree; the audit action is the state's name."""

    outcome: type[Outcome]
    tell_sender: bool = False       # a notice to the sender (held or quarantined, and why)
    tell_recipients: frozenset[Direction] = frozenset()  # a notice to the recipients
    inform_approvers: bool = False  # the people a Hold names (approvers) get a request
    bounce: bool = False            # every pending recipient fails; the sender gets a DSN
    retry: bool = False             # runnable again after a delay

    @property
    def state(self) -> MessageState:
        return self.outcome.state

    @property
    def audit_action(self) -> AuditAction:
        return AuditAction(self.state.value)


# Most specific first: the first row the outcome is an instance of applies. A bare
# ``Outcome`` is what the driver makes of a crash in a stage: the dead-letter state.
DISPOSITIONS: tuple[Disposition, ...] = (
    Disposition(Defer, retry=True),
    Disposition(Reject, bounce=True),
    Disposition(Hold, tell_sender=True, inform_approvers=True),
    # Inbound, the office's own recipients learn what was kept from them.
    Disposition(Quarantine, tell_sender=True, tell_recipients=frozenset({Direction.INBOUND})),
    Disposition(Outcome),
)


def disposition_of(outcome: Outcome) -> Disposition:
    return next(d for d in DISPOSITIONS if isinstance(outcome, d.outcome))


@dataclass(frozen=True)
class Applied:
    """The result to record: the message's new state, why, and when to try again."""

    state: MessageState
    reason: str | None
    audit_action: AuditAction
    next_attempt: datetime | None = None
    hold_kind: HoldKind | None = None  # what a held message waits for; None in other states
    # clamd failed on this message's content: its count of such failures goes up by one.
    scan_failed: bool = False


@dataclass(frozen=True)
class Finishing:
    """Everything applying a disposition needs, inside the worker's recording transaction."""

    session: Session
    services: Services
    actor: str
    ctx: MessageContext
    attempt: int
    now: datetime
    # Some recipient was filed in a mailbox in this transaction, so it is delivered: a
    # completed message needs no read of the recipients to know it.
    filed: bool = False

    @functools.cached_property
    def recipients(self) -> list[tuple[str, RecipientState]]:
        """Every recipient and its state, read in this transaction when first needed (most
        messages complete with a copy filed and never need it)."""
        return recipient_states(self.session, self.ctx.message_id)


def retry_delay(settings_base: float, settings_max: float, attempt: int) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return float(min(settings_max, settings_base * (2 ** max(0, attempt - 1))))


def apply(outcome: Outcome | None, at: Finishing) -> Applied:
    """Send the notices and DSNs ``outcome`` calls for; the state to record."""
    if outcome is None:
        return _completed(at)
    rule = disposition_of(outcome)
    ctx, settings = at.ctx, at.services.settings
    next_attempt = None
    if rule.retry:
        assert isinstance(outcome, Defer)
        # An explicit 0 means "at once" (a re-check), not "use the backoff".
        delay = outcome.retry_after if outcome.retry_after is not None else retry_delay(
            settings.delivery.retry_base_seconds, settings.delivery.retry_max_seconds,
            at.attempt)
        next_attempt = at.now + timedelta(seconds=delay)
    if rule.bounce:
        pending = [a for a, s in at.recipients if s == RecipientState.PENDING]
        fail_recipients(at.session, at.services.master_key, settings, message=ctx.ref,
                        original=ctx.raw, actor=at.actor, now=at.now, failures=[
                            Failure(a, "5.7.1", outcome.reason) for a in pending])
    tell_recipients = ctx.direction in rule.tell_recipients
    addresses = [a for a, _ in at.recipients] if rule.tell_sender or tell_recipients else []
    if rule.tell_sender:
        _notify_sender(at, addresses, rule.state, outcome.notice,
                       recipients_told=tell_recipients)
    if rule.inform_approvers and isinstance(outcome, Hold) and outcome.inform:
        request = notices.approval_request(queue_id=ctx.queue_id, text=outcome.inform_text)
        for address in outcome.inform:
            _store_notice(at, address, request)
    if tell_recipients:
        _notify_recipients(at, addresses, outcome.reason)
    return Applied(rule.state, outcome.reason, rule.audit_action, next_attempt,
                   outcome.kind if isinstance(outcome, Hold) else None,
                   scan_failed=isinstance(outcome, ScanFailed))


def _completed(at: Finishing) -> Applied:
    """Every stage ran: the recipients' states decide delivered or rejected."""
    if at.filed or any(s == RecipientState.DELIVERED for _, s in at.recipients):
        state, reason = MessageState.DELIVERED, None
    elif at.ctx.direction == Direction.OUTBOUND and not at.ctx.mail_from:
        state, reason = MessageState.FAILED, _undeliverable_notice(at)
    else:
        state, reason = MessageState.REJECTED, "no recipient could be delivered"
    return Applied(state, reason, AuditAction(state.value))


def _undeliverable_notice(at: Finishing) -> str:
    """One of the gateway's own notices or DSNs reached nobody. It has no sender to bounce
    to, so it ends as a visible dead letter (failed, retryable) instead of a rejection
    nobody hears of."""
    why = "; ".join(f"{a}: {r}" for a, r in failed_responses(at.session, at.ctx.message_id))
    log.warning("%s: the gateway's own notice could not be delivered (%s); it stays in the "
                "queue as failed", at.ctx.queue_id, why)
    return (f"undeliverable notice of the gateway (null sender, nobody to tell): {why}; "
            "retry with 'xgate queue retry' once its recipient can be reached")


def _notify_sender(at: Finishing, recipients: list[str], state: MessageState,
                   reason: notices.Text, *, recipients_told: bool) -> None:
    if not at.ctx.mail_from:
        return
    notice = notices.to_sender(queue_id=at.ctx.queue_id, recipients=recipients,
                               quarantined=state == MessageState.QUARANTINED,
                               reason=reason, recipients_told=recipients_told)
    _store_notice(at, at.ctx.mail_from, notice)


def _notify_recipients(at: Finishing, recipients: list[str], reason: str) -> None:
    for address in recipients:
        _store_notice(at, address, notices.to_quarantined_recipient(
            queue_id=at.ctx.queue_id, sender=at.ctx.mail_from, recipient=address,
            reason=reason))


def _store_notice(at: Finishing, to: str, notice: notices.Notice) -> None:
    settings = at.services.settings
    data = build_notice(reporting_mta=settings.smtp.hostname,
                        postmaster=settings.delivery.postmaster, to=to,
                        subject=notice.subject, text=notice.text, now=at.services.clock())
    store_received(at.session, at.services.master_key, Envelope(
        direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[to],
        data=data), actor=at.actor, now=at.services.clock())
