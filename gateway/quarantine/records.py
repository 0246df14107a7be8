"""Quarantined messages: look at them, release them (four eyes, after a re-scan), delete them.

The content stays sealed in the queue (crypto.at_rest) while a message is quarantined; it is
opened only in memory, to be scanned again. Data functions take the caller's session and never
commit; every change is audited in that same transaction. ``rescan_all`` is the exception: it
scans for minutes, so it owns one short transaction per message rather than holding the
database's write lock for the whole run.

Who the admin is has been established by the caller (the CLI asks for the password, the web
app has its login); these functions check that the named user is an enabled admin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from crypto.at_rest import MasterKey, open_sealed
from crypto.errors import SealError
from gateway import audit
from gateway.audit import AuditAction
from gateway.clock import Clock, system_clock
from gateway.db import read_scope, session_scope
from gateway.models import (
    Direction,
    Message,
    MessageState,
    Recipient,
    RecipientState,
    SealedContent,
    StaffUser,
)
from gateway.quarantine.models import (
    DecisionAction,
    QuarantineDecision,
    QuarantineRescan,
    RescanVerdict,
)
from gateway.queue.admin import QueueAdminError
from gateway.queue.spool import content_context
from gateway.queue.wake import mark_runnable
from gateway.staff.users import find_user
from scanning.verdict import SEVERITY

REQUIRED_APPROVALS = 2
# A reason is for people to read in the audit trail, not a place to paste a message.
MAX_REASON_LENGTH = 2000
RESCANNED_STATES = (MessageState.QUARANTINED, MessageState.HELD)
# How the scan stage's quarantine reasons begin (scanning.verdict.ScanResult.detail).
_SCAN_FINDINGS = tuple(f"{verdict.value}: " for verdict in SEVERITY)


class QuarantineError(QueueAdminError):
    """A quarantine action was refused; the message says why.

    A QueueAdminError, so the CLI shows it as one line like every other queue refusal.
    ``key`` and ``values`` name the refusal for a page, which words it in the user's
    language from its text catalogue (the message is the CLI's English).
    """

    def __init__(self, message: str, key: str = "", **values: object) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


class QuarantineNotFound(QuarantineError):
    """No message has that queue id (the web console answers 404)."""


class ScanOutcome(Protocol):
    """What a scanner says about content: the real one (scanning) and test ones alike."""

    @property
    def clean(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class Rescanner(Protocol):
    """Scans a message's stored content again, in memory: as the pipeline would, so an
    encrypted message is decrypted first (hence the direction and the recipients)."""

    def __call__(self, content: bytes, direction: Direction, recipients: list[str], /
                 ) -> ScanOutcome: ...


@dataclass(frozen=True)
class Decision:
    action: DecisionAction
    admin: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Rescan:
    verdict: RescanVerdict
    detail: str
    at: datetime


@dataclass(frozen=True)
class QuarantineView:
    """A quarantined or held message as an admin sees it: envelope and history, no content."""

    queue_id: str
    state: MessageState
    reason: str | None
    sender: str
    recipients: tuple[str, ...]
    received_at: datetime
    # Admins whose release approval counts towards the next release.
    pending_approvals: tuple[str, ...]
    latest_rescan: Rescan | None
    # Filled by ``show`` only; ``list_quarantined`` leaves them empty.
    decisions: tuple[Decision, ...] = ()
    rescans: tuple[Rescan, ...] = ()

    @property
    def stopped_by_scan(self) -> bool:
        """Quarantined for what the scanner found (not for a signature, a partner's rule or
        a decryption failure, which a clean re-scan does not change)."""
        return stopped_by_scan(self.reason)

    @property
    def needs_admin(self) -> bool:
        """Stopped by the scanner and scanned clean since: an admin should look again."""
        return (self.state == MessageState.QUARANTINED and self.stopped_by_scan
                and self.latest_rescan is not None
                and self.latest_rescan.verdict == RescanVerdict.CLEAN)


class ReleaseOutcome(StrEnum):
    APPROVAL_RECORDED = "approval-recorded"
    RELEASED = "released"
    REFUSED = "refused"


@dataclass(frozen=True)
class ReleaseResult:
    outcome: ReleaseOutcome
    queue_id: str
    # The admins whose approvals this step counted, in order.
    approvals: tuple[str, ...]
    # The re-scan's words, when there was one.
    detail: str = ""


@dataclass(frozen=True)
class RescanSummary:
    total: int
    clean: int
    not_clean: int
    unreadable: int
    # Left out: released, deleted or picked up by a worker while the run went on.
    skipped: int
    # Quarantined messages that now scan clean: they wait for an admin, never go out alone.
    now_clean: tuple[str, ...]


def stopped_by_scan(reason: str | None) -> bool:
    return (reason or "").startswith(_SCAN_FINDINGS)


# -- looking -----------------------------------------------------------------------------------


def list_quarantined(session: Session, *, include_held: bool = False, offset: int = 0,
                     limit: int | None = None) -> list[QuarantineView]:
    """Quarantined (and with ``include_held`` held) messages, oldest first; ``offset`` and
    ``limit`` give one page of them (the web console never loads the whole quarantine)."""
    states = RESCANNED_STATES if include_held else (MessageState.QUARANTINED,)
    messages = session.scalars(
        select(Message).options(selectinload(Message.recipients))
        .where(Message.state.in_(states)).order_by(Message.received_at, Message.id)
        .offset(offset).limit(limit)).all()
    ids = [m.id for m in messages]
    decisions = _decisions_by_message(session, ids)
    latest = _latest_rescans(session, ids)
    admins = _enabled_admins(session, {d.admin for ds in decisions.values() for d in ds})
    return [_view(m, decisions.get(m.id, []), admins, latest.get(m.id)) for m in messages]


def count_quarantined(session: Session, *, include_held: bool = False) -> int:
    states = RESCANNED_STATES if include_held else (MessageState.QUARANTINED,)
    return int(session.scalar(select(func.count()).select_from(Message)
                              .where(Message.state.in_(states))) or 0)


def show(session: Session, queue_id: str) -> QuarantineView:
    """One message with its decisions and re-scans; any state, so history stays visible."""
    message = _message(session, queue_id)
    decisions = _decisions_by_message(session, [message.id]).get(message.id, [])
    rescans = [_rescan(r) for r in session.scalars(
        select(QuarantineRescan).where(QuarantineRescan.message_id == message.id)
        .order_by(QuarantineRescan.id))]
    admins = _enabled_admins(session, {d.admin for d in decisions})
    view = _view(message, decisions, admins, rescans[-1] if rescans else None)
    return replace(view, decisions=tuple(_decision(d) for d in decisions),
                   rescans=tuple(rescans))


def is_released(session: Session, message_id: int) -> bool:
    """Whether two admins released this message after a clean re-scan.

    For the scan stage: a released message's content was judged by people, and the stage
    must not quarantine it again for what they overruled.
    """
    return bool(session.scalar(select(exists().where(
        QuarantineDecision.message_id == message_id,
        QuarantineDecision.action == DecisionAction.RELEASE))))


# -- deciding ----------------------------------------------------------------------------------


def approve_release(session: Session, queue_id: str, *, admin: str, reason: str,
                    now: datetime, master_key: MasterKey, rescan: Rescanner,
                    operator: str | None = None) -> ReleaseResult:
    """One admin's approval to release a quarantined message; the second one releases it.

    The second approval must come from a different admin, and releases only if the stored
    content scans clean now; otherwise the release is refused and the approvals so far are
    void. ``operator`` (the OS user behind a CLI call) goes into the audit detail.
    """
    reason = _checked_reason(reason)
    _check_admin(session, admin, "release")
    message = _message(session, queue_id, lock=True)
    if message.state != MessageState.QUARANTINED:
        raise QuarantineError(f"message {message.queue_id} is {message.state.value}, not "
                              "quarantined; only quarantined messages can be released",
                              "not-quarantined", state=message.state.value)
    decisions = _decisions_by_message(session, [message.id]).get(message.id, [])
    earlier = _pending(message, decisions,
                       _enabled_admins(session, {d.admin for d in decisions}))
    if admin in earlier:
        raise QuarantineError(f"{admin} has approved the release of {message.queue_id} "
                              "already; a second, different admin must approve",
                              "approved-already", admin=admin)
    actor = f"admin:{admin}"
    _decide(session, message, DecisionAction.RELEASE_APPROVAL, admin, reason, now)
    audit.record(session, actor=actor, action=AuditAction.QUARANTINE_RELEASE_APPROVAL,
                 queue_id=message.queue_id,
                 detail=_detail(operator, reason=reason, approvals=[*earlier, admin]))
    if len(earlier) + 1 < REQUIRED_APPROVALS:
        return ReleaseResult(ReleaseOutcome.APPROVAL_RECORDED, message.queue_id, (admin,))

    approvals = (*earlier, admin)
    verdict, detail = _scan_stored(session, message, master_key, rescan)
    _record_rescan(session, message, verdict, detail, now)
    if verdict != RescanVerdict.CLEAN:
        _decide(session, message, DecisionAction.RELEASE_REFUSED, admin,
                f"re-scan {verdict.value}: {detail}", now)
        audit.record(session, actor=actor, action=AuditAction.QUARANTINE_RELEASE_REFUSED,
                     queue_id=message.queue_id,
                     detail=_detail(operator, verdict=verdict.value, scan=detail,
                                    approvals_cleared=list(approvals)))
        return ReleaseResult(ReleaseOutcome.REFUSED, message.queue_id, approvals, detail)

    previous_reason = message.reason
    _decide(session, message, DecisionAction.RELEASE, admin, reason, now)
    # Deferred and due now: the worker runs the whole pipeline again, and the scan stage
    # lets it pass because is_released() says so. Recipients already done stay done.
    message.state = MessageState.DEFERRED
    message.next_attempt_at = now
    message.updated_at = now
    message.reason = "released by " + " and ".join(approvals)
    mark_runnable(session)
    audit.record(session, actor=actor, action=AuditAction.QUARANTINE_RELEASED,
                 queue_id=message.queue_id,
                 detail=_detail(operator, approvals=list(approvals), scan=detail,
                                previous_reason=previous_reason))
    session.flush()
    return ReleaseResult(ReleaseOutcome.RELEASED, message.queue_id, approvals, detail)


def delete(session: Session, queue_id: str, *, admin: str, reason: str, now: datetime,
           operator: str | None = None) -> Message:
    """Remove a quarantined message's content for good; the row stays for the audit trail.

    The message ends ``rejected`` and its pending recipients ``failed``, without a DSN: the
    sender was told when the message was quarantined, and a bounce would carry the very
    content we are deleting (or, for forged senders of malware, be backscatter).
    """
    reason = _checked_reason(reason)
    _check_admin(session, admin, "delete")
    message = _message(session, queue_id, lock=True)
    if message.state != MessageState.QUARANTINED:
        raise QuarantineError(f"message {message.queue_id} is {message.state.value}, not "
                              "quarantined; only quarantined messages can be deleted here",
                              "not-quarantined", state=message.state.value)
    why = f"deleted from quarantine by {admin}"
    failed = [r.address for r in message.recipients if r.state == RecipientState.PENDING]
    session.execute(update(Recipient).where(
        Recipient.message_id == message.id, Recipient.state == RecipientState.PENDING)
        .values(state=RecipientState.FAILED, response=why))
    session.execute(sql_delete(SealedContent).where(SealedContent.message_id == message.id))
    previous_reason = message.reason
    _decide(session, message, DecisionAction.DELETE, admin, reason, now)
    message.state = MessageState.REJECTED
    message.updated_at = now
    message.reason = f"{why}: {reason}"
    audit.record(session, actor=f"admin:{admin}", action=AuditAction.QUARANTINE_DELETED,
                 queue_id=message.queue_id,
                 detail=_detail(operator, reason=reason, previous_reason=previous_reason,
                                failed_recipients=failed))
    session.flush()
    # The recipients and content were changed with Core statements behind the ORM's back.
    session.expire(message)
    return message


# -- re-scanning after a signature update ------------------------------------------------------


def rescan_all(sessions: sessionmaker[Session], master_key: MasterKey, rescanner: Rescanner,
               *, progress: Callable[[int, int], None], actor: str = "quarantine-rescan",
               clock: Clock = system_clock) -> RescanSummary:
    """Scan every quarantined and held message again and record the verdicts.

    Nothing is released: a quarantined message that now scans clean is only marked, for an
    admin (four eyes) to release. ``progress(done, total)`` is called before the first and
    after every message. A scanner error ends the run; the verdicts recorded so far stay.
    """
    with read_scope(sessions) as session:
        targets = session.execute(
            select(Message.id, Message.queue_id, Message.reason)
            .where(Message.state.in_(RESCANNED_STATES))
            .order_by(Message.received_at, Message.id)).all()
    total = len(targets)
    counts = dict.fromkeys(RescanVerdict, 0)
    skipped = 0
    now_clean: list[str] = []
    progress(0, total)
    for done, (message_id, queue_id, reason) in enumerate(targets, start=1):
        with read_scope(sessions) as session:
            sealed = session.scalar(
                select(SealedContent.sealed).where(SealedContent.message_id == message_id))
            direction = session.scalar(select(Message.direction)
                                       .where(Message.id == message_id))
            recipients = list(session.scalars(select(Recipient.address).where(
                Recipient.message_id == message_id)))
        # Scanning happens outside any transaction: on SQLite a write transaction would
        # hold up the SMTP edge and the workers for as long as clamd takes.
        verdict, detail = (_scan(sealed, queue_id, direction, recipients, master_key,
                                 rescanner)
                           if sealed is not None and direction is not None else (None, ""))
        with session_scope(sessions) as session:
            state = session.scalar(select(Message.state).where(Message.id == message_id)
                                   .with_for_update())
            if verdict is None or state not in RESCANNED_STATES:
                skipped += 1
            else:
                session.add(QuarantineRescan(message_id=message_id, at=clock(),
                                             verdict=verdict, detail=detail))
                audit.record(session, actor=actor, action=AuditAction.QUARANTINE_RESCANNED,
                             queue_id=queue_id, detail={"verdict": verdict.value,
                                                        "scan": detail, "state": state.value})
                counts[verdict] += 1
                if verdict == RescanVerdict.CLEAN and state == MessageState.QUARANTINED \
                        and stopped_by_scan(reason):
                    now_clean.append(queue_id)
        progress(done, total)
    return RescanSummary(total=total, clean=counts[RescanVerdict.CLEAN],
                         not_clean=counts[RescanVerdict.NOT_CLEAN],
                         unreadable=counts[RescanVerdict.UNREADABLE], skipped=skipped,
                         now_clean=tuple(now_clean))


# -- helpers -----------------------------------------------------------------------------------


def _checked_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise QuarantineError("a reason is required", "reason-required")
    if len(text) > MAX_REASON_LENGTH:
        raise QuarantineError(f"the reason is too long (at most {MAX_REASON_LENGTH} characters)",
                              "reason-too-long", limit=MAX_REASON_LENGTH)
    return text


def _check_admin(session: Session, admin: str, what: str) -> None:
    user = find_user(session, admin)
    if user is None:
        raise QuarantineError(f"no staff user {admin}", "not-admin", admin=admin)
    if user.disabled:
        raise QuarantineError(f"staff user {admin} is disabled", "not-admin", admin=admin)
    if not user.admin:
        raise QuarantineError(f"staff user {admin} is not an admin; only admins may {what} "
                              "quarantined messages", "not-admin", admin=admin)


def _enabled_admins(session: Session, names: Iterable[str]) -> frozenset[str]:
    wanted = sorted(set(names))
    if not wanted:
        return frozenset()
    return frozenset(session.scalars(select(StaffUser.username).where(
        StaffUser.username.in_(wanted), StaffUser.admin.is_(True),
        StaffUser.disabled.is_(False))))


def _message(session: Session, queue_id: str, *, lock: bool = False) -> Message:
    query = (select(Message).options(selectinload(Message.recipients))
             .where(Message.queue_id == queue_id.strip().upper()))
    # The row lock orders two admins approving at once (PostgreSQL; SQLite's write
    # transactions are serial anyway), so neither can miss the other's approval.
    message = session.scalars(query.with_for_update(of=Message) if lock else query).one_or_none()
    if message is None:
        raise QuarantineNotFound(f"no message with queue id {queue_id!r}")
    return message


def _decisions_by_message(session: Session,
                          ids: Sequence[int]) -> dict[int, list[QuarantineDecision]]:
    found: dict[int, list[QuarantineDecision]] = {}
    if not ids:
        return found
    for d in session.scalars(select(QuarantineDecision)
                             .where(QuarantineDecision.message_id.in_(ids))
                             .order_by(QuarantineDecision.id)):
        found.setdefault(d.message_id, []).append(d)
    return found


def _latest_rescans(session: Session, ids: Sequence[int]) -> dict[int, Rescan]:
    if not ids:
        return {}
    newest = (select(func.max(QuarantineRescan.id))
              .where(QuarantineRescan.message_id.in_(ids))
              .group_by(QuarantineRescan.message_id))
    return {r.message_id: _rescan(r) for r in session.scalars(
        select(QuarantineRescan).where(QuarantineRescan.id.in_(newest)))}


def _pending(message: Message, decisions: Sequence[QuarantineDecision],
             admins: frozenset[str]) -> list[str]:
    """The admins whose approvals count towards releasing the message now.

    Approvals count only since the message's last release, refusal or deletion, and only
    since it was last put into its state: an approval given for an earlier quarantine of
    the same message (retried, quarantined again) must not be half of a new release. An
    approver who has since lost the admin right or been disabled no longer counts either.
    """
    pending: list[str] = []
    for d in decisions:
        if d.action != DecisionAction.RELEASE_APPROVAL:
            pending = []
        elif d.at >= message.updated_at and d.admin in admins and d.admin not in pending:
            pending.append(d.admin)
    return pending


def _view(message: Message, decisions: Sequence[QuarantineDecision], admins: frozenset[str],
          latest: Rescan | None) -> QuarantineView:
    return QuarantineView(
        queue_id=message.queue_id, state=message.state, reason=message.reason,
        sender=message.mail_from, recipients=tuple(r.address for r in message.recipients),
        received_at=message.received_at,
        pending_approvals=(tuple(_pending(message, decisions, admins))
                           if message.state == MessageState.QUARANTINED else ()),
        latest_rescan=latest)


def _decision(d: QuarantineDecision) -> Decision:
    return Decision(action=d.action, admin=d.admin, reason=d.reason, at=d.at)


def _rescan(r: QuarantineRescan) -> Rescan:
    return Rescan(verdict=r.verdict, detail=r.detail, at=r.at)


def _decide(session: Session, message: Message, action: DecisionAction, admin: str,
            reason: str, now: datetime) -> None:
    session.add(QuarantineDecision(message_id=message.id, action=action, admin=admin,
                                   reason=reason, at=now))
    session.flush()


def _record_rescan(session: Session, message: Message, verdict: RescanVerdict, detail: str,
                   now: datetime) -> None:
    session.add(QuarantineRescan(message_id=message.id, at=now, verdict=verdict, detail=detail))


def _scan_stored(session: Session, message: Message, master_key: MasterKey,
                 rescanner: Rescanner) -> tuple[RescanVerdict, str]:
    sealed = session.scalar(
        select(SealedContent.sealed).where(SealedContent.message_id == message.id))
    if sealed is None:
        return RescanVerdict.UNREADABLE, "the stored content is missing"
    return _scan(sealed, message.queue_id, message.direction,
                 [r.address for r in message.recipients], master_key, rescanner)


def _scan(sealed: bytes, queue_id: str, direction: Direction, recipients: list[str],
          master_key: MasterKey, rescanner: Rescanner) -> tuple[RescanVerdict, str]:
    try:
        content = open_sealed(master_key, sealed, content_context(queue_id))
    except SealError as exc:
        return RescanVerdict.UNREADABLE, f"stored content cannot be opened: {exc}"
    outcome = rescanner(content, direction, recipients)
    return (RescanVerdict.CLEAN if outcome.clean else RescanVerdict.NOT_CLEAN), outcome.detail


def _detail(operator: str | None, **facts: object) -> dict[str, object]:
    return {**facts, "os_user": operator} if operator else facts
