"""Reports held by the consent gate: re-checked when releases change, returned when stale,
and moved on by a second person's approval of a transfer on a legal basis.

Held and queued reports carry the case they are for (``Message.case_reference``, written by
the consent stage), so a change to one case's releases wakes only that case's reports, and
other senders do not get a fresh "still held" notice for nothing. What a held report waits
for is its ``hold_kind``; the reason says it in words.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey, open_sealed
from gateway import audit
from gateway.audit import AuditAction
from gateway.clock import Clock
from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.models import StatutoryApproval
from gateway.db import session_scope
from gateway.delivery.dsn import Failure
from gateway.delivery.recipients import MessageRef, fail_recipients
from gateway.models import Direction, HoldKind, Message, MessageState, RecipientState
from gateway.periodic import PeriodicJob
from gateway.policy.consent import JUSTIFICATION_MISSING, normalise_case
from gateway.queue.spool import content_context
from gateway.queue.wake import mark_runnable
from gateway.settings import Settings
from gateway.staff import users as staff

log = logging.getLogger(__name__)

# How the reasons of the consent gate's holds start, for the people reading them (the
# hold's kind is in ``Message.hold_kind``).
CONSENT_HOLD_PREFIX = "consent: "
STATUTORY_HOLD_PREFIX = CONSENT_HOLD_PREFIX + "statutory transfer"
# Both wait for the consent gate: a release, or a second person's approval.
CONSENT_HOLDS = (HoldKind.CONSENT, HoldKind.STATUTORY_APPROVAL)


def _facts_of(facts: str | None) -> dict[str, str]:
    # Facts are ours, but a damaged row must not stop the re-check of every other report.
    try:
        loaded = json.loads(facts) if facts else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def recheck_case(session: Session, case: str, *, actor: str, now: datetime, why: str,
                 include_queued: bool = False) -> list[str]:
    """Run the consent gate again, at once, for the case's held reports.

    With ``include_queued`` (a revocation) also the case's reports that wait for a retry:
    they passed the gate earlier, and must meet the revocation before their next attempt,
    not after it.
    """
    key = normalise_case(case)
    states = [MessageState.HELD]
    if include_queued:
        states += [MessageState.DEFERRED, MessageState.RECEIVED]
    rows = session.execute(
        select(Message.id, Message.queue_id, Message.state, Message.hold_kind)
        .where(Message.direction == Direction.OUTBOUND, Message.state.in_(states),
               Message.case_reference == key)).all()
    woken: list[str] = []
    for message_id, queue_id, state, hold_kind in rows:
        if state == MessageState.HELD and hold_kind not in CONSENT_HOLDS:
            # Held for something else (a missing key): the gate runs again when that is
            # resolved; waking it now would only repeat the other hold's notice.
            continue
        values: dict[str, object] = {"next_attempt_at": now, "updated_at": now}
        if state == MessageState.HELD:
            values.update(state=MessageState.DEFERRED, reason=f"re-queued: {why}",
                          hold_kind=None)
        done = session.execute(update(Message).where(Message.id == message_id,
                                                     Message.state == state).values(**values))
        if done.rowcount:  # type: ignore[attr-defined]
            woken.append(queue_id)
            audit.record(session, actor=actor, action=AuditAction.CONSENT_RECHECK,
                         queue_id=queue_id, detail={"reason": why})
    if woken:
        mark_runnable(session)
    return woken


@dataclass(frozen=True)
class HeldReport:
    queue_id: str
    mail_from: str
    received_at: datetime
    reason: str
    recipients: tuple[str, ...]
    facts: dict[str, str]
    kind: HoldKind


def held_reports(session: Session, *, case: str | None = None) -> list[HeldReport]:
    """Every report the consent gate holds (for ``case``, if given), oldest first."""
    query = (select(Message).where(Message.direction == Direction.OUTBOUND,
                                   Message.state == MessageState.HELD,
                                   Message.hold_kind.in_(CONSENT_HOLDS))
             .order_by(Message.received_at))
    if case is not None:
        query = query.where(Message.case_reference == normalise_case(case))
    messages = session.scalars(query).all()
    return [HeldReport(m.queue_id, m.mail_from, m.received_at, m.reason or "",
                       tuple(r.address for r in m.recipients
                             if r.state == RecipientState.PENDING),
                       _facts_of(m.facts), m.hold_kind or HoldKind.CONSENT)  # never None here
            for m in messages]


def expire_holds(session: Session, settings: Settings, master_key: MasterKey, *,
                 actor: str, now: datetime) -> list[str]:
    """Return reports held longer than ``consent.hold_expiry_days`` to their senders.

    The sender gets a delivery status notification naming the reason it was held; nothing
    was sent to the recipients.
    """
    cutoff = now - timedelta(days=settings.consent.hold_expiry_days)
    stale = session.scalars(
        select(Message).where(Message.direction == Direction.OUTBOUND,
                              Message.state == MessageState.HELD,
                              Message.hold_kind.in_(CONSENT_HOLDS),
                              Message.received_at <= cutoff)).all()
    expired: list[str] = []
    for message in stale:
        reason = (f"held for {settings.consent.hold_expiry_days} days without a covering "
                  f"release; last reason: {message.reason}")
        done = session.execute(update(Message).where(
            Message.id == message.id, Message.state == MessageState.HELD).values(
            state=MessageState.REJECTED, reason=reason, updated_at=now, hold_kind=None))
        if not done.rowcount:  # type: ignore[attr-defined]
            continue  # re-queued or expired by another process meanwhile
        original = open_sealed(master_key, message.content.sealed,
                               content_context(message.queue_id))
        pending = [r.address for r in message.recipients if r.state == RecipientState.PENDING]
        fail_recipients(session, master_key, settings,
                        message=MessageRef(message.id, message.queue_id, message.mail_from,
                                           message.received_at),
                        original=original, failures=[Failure(a, "5.7.1", reason)
                                                     for a in pending],
                        actor=actor, now=now)
        audit.record(session, actor=actor, action=AuditAction.CONSENT_HOLD_EXPIRED,
                     queue_id=message.queue_id, detail={"reason": reason})
        expired.append(message.queue_id)
    return expired


def approvers_of(session: Session, message_id: int) -> tuple[str, ...]:
    return tuple(session.scalars(select(StatutoryApproval.approver)
                                 .where(StatutoryApproval.message_id == message_id)
                                 .order_by(StatutoryApproval.id)).all())


def approve_statutory(session: Session, queue_id: str, *, approver: str, reason: str,
                      now: datetime) -> None:
    """A second person approves a held transfer on a legal basis; it runs the gate again.

    The approver must be a staff user other than the one who sent it and must not own the
    sender address: four eyes, not two accounts of one person.
    """
    if not reason.strip():
        raise ConsentError("give a reason for the approval", key="reason_missing")
    message = session.scalars(select(Message).where(Message.queue_id == queue_id)).first()
    if message is None or message.direction != Direction.OUTBOUND:
        raise ConsentNotFound(f"no outbound message {queue_id}")
    if message.state != MessageState.HELD or \
            message.hold_kind != HoldKind.STATUTORY_APPROVAL:
        raise ConsentConflict(f"message {queue_id} is not waiting for the approval of a "
                              f"statutory transfer (it is {message.state.value})",
                              key="not_waiting")
    if JUSTIFICATION_MISSING in (message.reason or ""):
        # An approval could not make it ready: it would only look approved and stay held.
        raise ConsentError(f"message {queue_id} has no justification (X-Xgate-Justification): "
                           "a transfer on a legal basis does not leave without one, approved "
                           "or not; the sender has to send it again with the reasons in that "
                           "field", key="no_justification")
    user = staff.find_user(session, approver)
    if user is None or user.disabled:
        raise ConsentError(f"no active staff user {approver!r}")
    if approver == message.auth_user or message.mail_from.lower() in {
            a.lower() for a in staff.sender_addresses(session, approver)}:
        raise ConsentError(f"{approver} sent this message; a second, different person must "
                           "approve it", key="own_report")
    if approver in approvers_of(session, message.id):
        raise ConsentConflict(f"{approver} has already approved message {queue_id}",
                              key="approved_already")
    session.add(StatutoryApproval(message_id=message.id, approver=approver,
                                  reason=reason.strip(), approved_at=now))
    session.execute(update(Message).where(Message.id == message.id).values(
        state=MessageState.DEFERRED, next_attempt_at=now, updated_at=now, hold_kind=None,
        reason=f"re-queued: statutory transfer approved by {approver}"))
    mark_runnable(session)
    audit.record(session, actor=approver, action=AuditAction.STATUTORY_APPROVED, queue_id=queue_id,
                 detail={"reason": reason.strip()})


class HoldExpiry(PeriodicJob):
    """Returns stale consent holds to their senders, every ``interval`` seconds.

    Runs beside the workers. The state change is conditional (held -> rejected), so two
    processes sweeping at once cannot return a report twice.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 master_key: MasterKey, clock: Clock, interval: float = 300) -> None:
        super().__init__("consent-hold-expiry", interval)
        self.settings = settings
        self.sessions = sessions
        self.master_key = master_key
        self.clock = clock

    def sweep_once(self) -> list[str]:
        try:
            with session_scope(self.sessions) as session:
                expired = expire_holds(session, self.settings, self.master_key,
                                       actor="consent-hold-expiry", now=self.clock())
        except SQLAlchemyError as exc:
            log.warning("consent hold expiry: database unavailable: %s", type(exc).__name__)
            return []
        for queue_id in expired:
            log.info("%s: held without consent too long; returned to the sender", queue_id)
        return expired

    def run_once(self) -> None:
        self.sweep_once()
