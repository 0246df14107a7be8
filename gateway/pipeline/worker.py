"""A worker: claims a message, runs its pipeline, records the result in one transaction."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crypto.at_rest import open_sealed
from crypto.errors import SealError
from gateway import audit
from gateway.db import read_scope, session_scope
from gateway.delivery import notices
from gateway.delivery.dsn import Failure, build_notice
from gateway.delivery.journal import Noted
from gateway.delivery.recipients import (
    fail_recipients,
    failed_responses,
    mark_delivered,
    pending_pairs,
    pending_recipients,
    recipient_states,
)
from gateway.models import Direction, MessageState, RecipientState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.driver import PipelineResult, StageTimer, run_pipeline
from gateway.pipeline.outcomes import Defer, Hold, Quarantine, Reject
from gateway.pipeline.pipelines import stages_for
from gateway.queue.lease import LeaseKeeper
from gateway.queue.spool import Envelope, content_context, store_received
from gateway.queue.store import Claim, claim_next, load, release
from gateway.services import Services
from mailboxes.store import file_sealed

log = logging.getLogger(__name__)


def worker_name(index: int = 0) -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}:{index}"


def prune_relay_journal(services: Services) -> None:
    """Forget relay journal notes the queue database has recorded (run at process start)."""
    journal = services.relay_journal
    if journal is None:
        return

    def still_pending(notes: list[Noted]) -> set[tuple[str, str]]:
        with read_scope(services.sessions) as session:
            return pending_pairs(session, {n.queue_id for n in notes})

    try:
        forgotten = journal.prune(still_pending)
    except sqlite3.Error as exc:
        log.warning("relay journal: %s", exc)
        return
    if forgotten:
        log.info("relay journal: forgot %d note(s) already recorded", forgotten)


def retry_delay(settings_base: float, settings_max: float, attempt: int) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return float(min(settings_max, settings_base * (2 ** max(0, attempt - 1))))


class Worker:
    def __init__(self, services: Services, name: str, timer: StageTimer | None = None) -> None:
        self.services = services
        self.name = name
        self.timer = timer
        self._claimed_ahead: Claim | None = None

    def run_forever(self, stop: threading.Event) -> None:
        poll = self.services.settings.workers.poll_interval_seconds
        # A message claimed ahead is finished before stopping: it is this worker's already,
        # and left alone it would wait for its lease to run out.
        while not stop.is_set() or self._claimed_ahead is not None:
            try:
                busy = self.process_one(claim_ahead=not stop.is_set())
            except OperationalError as exc:
                log.warning("%s: database unavailable (%s); retrying", self.name,
                            type(exc).__name__)
                busy = False
            if not busy:
                stop.wait(poll)

    def process_one(self, *, claim_ahead: bool = False) -> bool:
        """Process one message if one is runnable. True if one was processed.

        With ``claim_ahead`` the transaction that records this message's outcome also
        claims the next one: on SQLite every write transaction waits for the one write
        lock the SMTP edge needs too, so a worker takes it once per message, not twice.
        """
        claim, self._claimed_ahead = self._claimed_ahead, None
        if claim is None:
            with session_scope(self.services.sessions) as session:
                claim = claim_next(session, self.name, self.services.clock(),
                                   self.services.settings.workers.lease_seconds)
        if claim is None:
            return False
        ctx = self._load(claim)
        if ctx is None:
            return True
        with LeaseKeeper(self.services, claim):
            result = run_pipeline(ctx, stages_for(ctx.direction), self.services,
                                  timer=self.timer)
        self._claimed_ahead = self._finish(claim, ctx, result, claim_ahead=claim_ahead)
        return True

    def _load(self, claim: Claim) -> MessageContext | None:
        with read_scope(self.services.sessions) as session:
            message = load(session, claim.message_id)
            pending = pending_recipients(session, message.id)
        pending = self._recover_relayed(claim, pending)
        try:
            raw = open_sealed(self.services.master_key, message.sealed,
                              content_context(message.queue_id))
        except SealError as exc:
            # Wrong master key or damaged storage: nothing a retry fixes by itself.
            self._fail_unreadable(claim, f"stored content cannot be opened: {exc}")
            return None
        return MessageContext(
            message_id=message.id, queue_id=message.queue_id, direction=message.direction,
            mail_from=message.mail_from, received_at=message.received_at,
            attempt=claim.attempt, raw=raw, auth_user=message.auth_user,
            pending=pending, worker=self.name,
        )

    def _recover_relayed(self, claim: Claim, pending: list[str]) -> list[str]:
        """Recipients the relay journal has as delivered are recorded so and not sent again
        (a worker died between the next hop's 250 and the queue database's record)."""
        journal = self.services.relay_journal
        if journal is None:
            return pending
        try:
            notes = journal.noted(claim.queue_id)
        except sqlite3.Error as exc:
            log.error("%s: relay journal unreadable (%s); a recipient relayed just before a "
                      "crash may get the message twice", claim.queue_id, exc)
            return pending
        if not notes:
            return pending
        found = [n for n in notes if n.recipient in pending]
        if found:
            with session_scope(self.services.sessions) as session:
                for note in found:
                    mark_delivered(session, claim.message_id, note.recipient, note.reply,
                                   datetime.fromtimestamp(note.noted_at, UTC))
                audit.record_many(session, [audit.Event(self.name, "delivered", claim.queue_id, {
                    "recipient": n.recipient, "relay": n.relay, "reply": n.reply,
                    "noted_at": datetime.fromtimestamp(n.noted_at, UTC).isoformat(),
                    "recorded_from": "relay journal"}) for n in found])
            log.warning("%s: %d recipient(s) were relayed before the previous worker stopped; "
                        "recorded from the relay journal, not sent again", claim.queue_id,
                        len(found), extra={"queue_id": claim.queue_id})
        try:
            journal.forget(claim.queue_id, [n.recipient for n in notes])
        except sqlite3.Error as exc:
            log.warning("%s: relay journal: %s", claim.queue_id, exc)
        done = {n.recipient for n in found}
        return [a for a in pending if a not in done]

    def _fail_unreadable(self, claim: Claim, reason: str) -> None:
        log.error("%s: %s", claim.queue_id, reason)
        with session_scope(self.services.sessions) as session:
            release(session, claim, state=MessageState.FAILED, reason=reason,
                    now=self.services.clock())
            audit.record(session, actor=self.name, action="failed",
                         queue_id=claim.queue_id, detail={"reason": reason})

    def _finish(self, claim: Claim, ctx: MessageContext, result: PipelineResult, *,
                claim_ahead: bool = False) -> Claim | None:
        """Record the outcome; with ``claim_ahead`` also claim the next message."""
        services = self.services
        settings = services.settings
        now = services.clock()
        outcome = result.outcome
        next_attempt = None
        with session_scope(services.sessions) as session:
            events = self._file_copies(session, ctx, now)
            recipients = recipient_states(session, claim.message_id)
            if outcome is None:
                delivered = any(s == RecipientState.DELIVERED for _, s in recipients)
                state = MessageState.DELIVERED if delivered else MessageState.REJECTED
                reason = None if delivered else "no recipient could be delivered"
                if not delivered and ctx.direction == Direction.OUTBOUND and not ctx.mail_from:
                    state, reason = MessageState.FAILED, self._undeliverable_notice(
                        session, ctx)
            elif isinstance(outcome, Defer):
                state, reason = MessageState.DEFERRED, outcome.reason
                # An explicit 0 means "at once" (a re-check), not "use the backoff".
                delay = outcome.retry_after if outcome.retry_after is not None else retry_delay(
                    settings.delivery.retry_base_seconds, settings.delivery.retry_max_seconds,
                    claim.attempt)
                next_attempt = now + timedelta(seconds=delay)
            elif isinstance(outcome, Reject):
                state, reason = MessageState.REJECTED, outcome.reason
                pending = [a for a, s in recipients if s == RecipientState.PENDING]
                fail_recipients(session, services.master_key, settings, message=ctx.ref,
                                original=ctx.raw, actor=self.name, now=now, failures=[
                                    Failure(a, "5.7.1", outcome.reason) for a in pending])
            elif isinstance(outcome, Hold | Quarantine):
                state, reason = outcome.state, outcome.reason
                # Inbound, the office's own recipients learn what was kept from them.
                tell_recipients = (isinstance(outcome, Quarantine)
                                   and ctx.direction == Direction.INBOUND)
                self._notify_sender(session, ctx, [a for a, _ in recipients], state,
                                    outcome.notice, recipients_told=tell_recipients)
                if isinstance(outcome, Hold) and outcome.inform:
                    request = notices.approval_request(queue_id=ctx.queue_id,
                                                       text=outcome.inform_text)
                    for address in outcome.inform:
                        self._store_notice(session, address, request)
                if tell_recipients:
                    self._notify_recipients(session, ctx, [a for a, _ in recipients],
                                            outcome.reason)
            else:
                state, reason = MessageState.FAILED, outcome.reason
            facts = dict(ctx.facts)
            if ctx.direction == Direction.INBOUND:
                facts.update(ctx.inbound_crypto.facts())
            if not release(session, claim, state=state, reason=reason, now=now,
                           next_attempt_at=next_attempt,
                           facts=json.dumps(facts, sort_keys=True) if facts else None):
                # Another worker took over after our lease ran out; its result counts.
                log.warning("%s: lease lost before finishing; result discarded", claim.queue_id)
                session.rollback()
                return None
            detail: dict[str, object] = {"reason": reason, "stage": result.stage,
                                         "attempt": claim.attempt}
            detail.update(facts)
            if next_attempt is not None:
                detail["next_attempt_at"] = next_attempt.isoformat()
            events.append(audit.Event(self.name, state.value, claim.queue_id, detail))
            audit.record_many(session, events)
            ahead = (claim_next(session, self.name, now, settings.workers.lease_seconds)
                     if claim_ahead else None)
        log.info("%s -> %s%s", claim.queue_id, state.value, f" ({reason})" if reason else "")
        return ahead

    def _undeliverable_notice(self, session: Session, ctx: MessageContext) -> str:
        """One of the gateway's own notices or DSNs reached nobody. It has no sender to
        bounce to, so it ends as a visible dead letter (failed, retryable) instead of a
        rejection nobody hears of."""
        why = "; ".join(f"{a}: {r}" for a, r in failed_responses(session, ctx.message_id))
        log.warning("%s: the gateway's own notice could not be delivered (%s); it stays "
                    "in the queue as failed", ctx.queue_id, why)
        return (f"undeliverable notice of the gateway (null sender, nobody to tell): {why}; "
                "retry with 'xgate queue retry' once its recipient can be reached")

    def _file_copies(self, session: Session, ctx: MessageContext,
                     now: datetime) -> list[audit.Event]:
        """File the mailbox copies the deliver stage sealed; their audit entries."""
        events = []
        for filing in ctx.filings:
            filed = file_sealed(session, mailbox_id=filing.route.mailbox_id,
                                message_id=ctx.message_id, mail_from=ctx.mail_from,
                                size=filing.size, sealed=filing.sealed, now=now)
            mark_delivered(session, ctx.message_id, filing.recipient, "filed in mailbox", now)
            events.append(audit.Event(self.name, "delivered", ctx.queue_id, {
                "recipient": filing.recipient, "mailbox": filing.route.mailbox_address,
                "already_filed": not filed}))
        return events

    def _notify_sender(self, session: Session, message: MessageContext, recipients: list[str],
                       state: MessageState, reason: notices.Text, *,
                       recipients_told: bool) -> None:
        if not message.mail_from:
            return
        notice = notices.to_sender(queue_id=message.queue_id, recipients=recipients,
                                   quarantined=state == MessageState.QUARANTINED,
                                   reason=reason, recipients_told=recipients_told)
        self._store_notice(session, message.mail_from, notice)

    def _notify_recipients(self, session: Session, message: MessageContext,
                           recipients: list[str], reason: str) -> None:
        for address in recipients:
            self._store_notice(session, address, notices.to_quarantined_recipient(
                queue_id=message.queue_id, sender=message.mail_from, recipient=address,
                reason=reason))

    def _store_notice(self, session: Session, to: str, notice: notices.Notice) -> None:
        settings = self.services.settings
        data = build_notice(reporting_mta=settings.smtp.hostname,
                            postmaster=settings.delivery.postmaster, to=to,
                            subject=notice.subject, text=notice.text, now=self.services.clock())
        store_received(session, self.services.master_key, Envelope(
            direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[to],
            data=data), actor=self.name, now=self.services.clock())
