"""A worker: claims a message, runs its pipeline, records the result in one transaction."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crypto.errors import SealError
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import read_scope, session_scope
from gateway.delivery.journal import Noted
from gateway.delivery.recipients import (
    mark_delivered,
    pending_pairs,
    pending_recipients,
)
from gateway.memory_release import RELEASE_AFTER_BYTES, release_freed_memory
from gateway.models import Direction, MessageState
from gateway.pipeline import dispositions
from gateway.pipeline.context import MessageContext
from gateway.pipeline.driver import PipelineResult, StageTimer, run_pipeline
from gateway.pipeline.pipelines import stages_for
from gateway.queue.lease import LeaseKeeper
from gateway.queue.spool import content_context
from gateway.queue.store import Claim, claim_next, load, next_due, release
from gateway.queue.wake import Doorbell
from gateway.services import Services
from mailboxes.store import file_sealed
from mailboxes.tickets.threading import Filed, thread_filed

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


class Worker:
    def __init__(self, services: Services, name: str, timer: StageTimer | None = None) -> None:
        self.services = services
        self.name = name
        self.timer = timer
        self._claimed_ahead: Claim | None = None

    def run_forever(self, stop: threading.Event, doorbell: Doorbell | None = None) -> None:
        """Process messages until ``stop``. With a ``doorbell`` (gateway.queue.wake) an idle
        worker sleeps until it rings, until the next retry or lease end is due, or at most
        the poll interval; without one it polls. Whoever sets ``stop`` rings the doorbell."""
        poll = self.services.settings.workers.poll_interval_seconds
        # A message claimed ahead is finished before stopping: it is this worker's already,
        # and left alone it would wait for its lease to run out.
        while not stop.is_set() or self._claimed_ahead is not None:
            # Noted before looking for work: a ring while we look is not slept through.
            seen = doorbell.rings if doorbell is not None else 0
            try:
                busy = self.process_one(claim_ahead=not stop.is_set())
            except OperationalError as exc:
                log.warning("%s: database unavailable (%s); retrying", self.name,
                            type(exc).__name__)
                busy = False
                if doorbell is not None:
                    # No sleeping on a timer read from a database that is away.
                    stop.wait(poll)
                    continue
            if busy:
                continue
            if doorbell is None:
                stop.wait(poll)
            elif not stop.is_set():
                doorbell.wait(seen, self._idle_seconds(poll))

    def _idle_seconds(self, poll: float) -> float:
        """How long an idle worker may sleep: until the next message is due by time alone,
        at most ``poll`` (the fallback for a ring that got lost)."""
        try:
            with read_scope(self.services.sessions) as session:
                due = next_due(session)
        except OperationalError:
            return poll
        if due is None:
            return poll
        # A little after the due moment, since claims compare with <=; and never 0, or a
        # message another worker holds locked this instant would make us spin.
        until = (due - self.services.clock()).total_seconds() + 0.005
        return min(poll, max(0.01, until))

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
        if len(ctx.raw) >= RELEASE_AFTER_BYTES:
            # Every copy of a large message is free now; give the pages back (glibc keeps
            # them otherwise: a worker stayed at several times a 10 MB message while idle).
            del ctx, result
            release_freed_memory()
        return True

    def _load(self, claim: Claim) -> MessageContext | None:
        try:
            with read_scope(self.services.sessions) as session:
                message = load(session, claim.message_id, self.services.master_key,
                               content_context)
                pending = pending_recipients(session, message.id)
        except SealError as exc:
            # Wrong master key or damaged storage: nothing a retry fixes by itself.
            self._fail_unreadable(claim, f"stored content cannot be opened: {exc}")
            return None
        pending = self._recover_relayed(claim, pending)
        raw = message.content
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
                audit.record_many(session, [audit.Event(
                    self.name, AuditAction.DELIVERED, claim.queue_id, {
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
            audit.record(session, actor=self.name, action=AuditAction.FAILED,
                         queue_id=claim.queue_id, detail={"reason": reason})

    def _finish(self, claim: Claim, ctx: MessageContext, result: PipelineResult, *,
                claim_ahead: bool = False) -> Claim | None:
        """Record the outcome; with ``claim_ahead`` also claim the next message."""
        services = self.services
        settings = services.settings
        now = services.clock()
        outcome = result.outcome
        with session_scope(services.sessions) as session:
            events = self._file_copies(session, ctx, now)
            applied = dispositions.apply(outcome, dispositions.Finishing(
                session=session, services=services, actor=self.name, ctx=ctx,
                attempt=claim.attempt, now=now, filed=bool(ctx.filings)))
            state, reason, next_attempt = applied.state, applied.reason, applied.next_attempt
            facts = dict(ctx.facts)
            if ctx.direction == Direction.INBOUND:
                facts.update(ctx.inbound_crypto.facts())
            if not release(session, claim, state=state, reason=reason, now=now,
                           next_attempt_at=next_attempt,
                           facts=json.dumps(facts, sort_keys=True) if facts else None,
                           hold_kind=applied.hold_kind, case_reference=ctx.case_reference,
                           scan_failed=applied.scan_failed):
                # Another worker took over after our lease ran out; its result counts.
                log.warning("%s: lease lost before finishing; result discarded", claim.queue_id)
                session.rollback()
                return None
            detail: dict[str, object] = {"reason": reason, "stage": result.stage,
                                         "attempt": claim.attempt}
            detail.update(facts)
            if next_attempt is not None:
                detail["next_attempt_at"] = next_attempt.isoformat()
            events.append(audit.Event(self.name, applied.audit_action, claim.queue_id, detail))
            audit.record_many(session, events)
            ahead = (claim_next(session, self.name, now, settings.workers.lease_seconds)
                     if claim_ahead else None)
        log.info("%s -> %s%s", claim.queue_id, state.value, f" ({reason})" if reason else "")
        return ahead

    def _file_copies(self, session: Session, ctx: MessageContext,
                     now: datetime) -> list[audit.Event]:
        """File the mailbox copies the deliver stage sealed; their audit entries (and those
        of the receipts their tickets sent), in order, for ``_finish`` to record."""
        events: list[audit.Event] = []
        for filing in ctx.filings:
            filed = file_sealed(session, mailbox_id=filing.route.mailbox_id,
                                message_id=ctx.message_id, mail_from=ctx.mail_from,
                                size=filing.size, sealed=filing.sealed, now=now,
                                queue_id=ctx.queue_id)
            mark_delivered(session, ctx.message_id, filing.recipient, "filed in mailbox", now)
            detail: dict[str, object] = {}
            if filed is not None:
                detail = self._thread(session, ctx, filing.route.mailbox_id, filed, now,
                                      events)
            events.append(audit.Event(self.name, AuditAction.DELIVERED, ctx.queue_id, {
                "recipient": filing.recipient, "mailbox": filing.route.mailbox_address,
                "already_filed": filed is None, **detail}))
        return events

    def _thread(self, session: Session, ctx: MessageContext, mailbox_id: int, stored_id: int,
                now: datetime, events: list[audit.Event]) -> dict[str, object]:
        """The filed copy becomes a ticket or joins one (and a new one may send a receipt),
        in this same transaction; what happened, for the audit entry."""
        settings = self.services.settings
        threaded = thread_filed(
            session, self.services.master_key,
            Filed(mailbox_id, stored_id, ctx.mail_from, ctx.headers(),
                  internal=ctx.direction == Direction.OUTBOUND),
            postmaster=settings.delivery.postmaster, hostname=settings.smtp.hostname,
            actor=self.name, now=now, audit_to=events)
        detail: dict[str, object] = {"ticket": threaded.number, "new_ticket": threaded.new}
        if threaded.linked_to:
            detail["linked_to"] = threaded.linked_to
        if threaded.receipt_queue_id:
            detail["receipt"] = threaded.receipt_queue_id
        return detail
