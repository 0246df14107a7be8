"""Quarantine decisions on SQLite and PostgreSQL: four-eyes release after a re-scan, delete,
re-scan after a signature update. Every test ends with an intact audit chain.

The real scanner (clamd) is not needed here: a test scanner that knows a set of signatures
stands in for it, the same shape the real one has (``.clean``, ``.detail``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey, seal
from gateway import audit
from gateway.audit.view import opened
from gateway.clock import FakeClock
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import (
    AuditEntry,
    Direction,
    Message,
    MessageState,
    Recipient,
    RecipientState,
    SealedContent,
)
from gateway.quarantine.models import DecisionAction, QuarantineDecision, RescanVerdict
from gateway.quarantine.records import (
    QuarantineError,
    ReleaseOutcome,
    ReleaseResult,
    approve_release,
    delete,
    is_released,
    list_quarantined,
    rescan_all,
    show,
)
from gateway.queue.spool import Envelope, content_context, store_received
from gateway.settings import Settings
from gateway.staff import users as staff

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# A pattern an old signature matched by mistake; the update drops it.
FALSE_POSITIVE = b"Hilfeplan-Makro-Vorlage"
PASSWORD = "correct horse battery staple"


def mail(body: bytes) -> bytes:
    return (b"From: a@partner.example\r\nTo: asd@jugendamt.example\r\n"
            b"Subject: Stellungnahme\r\n\r\n" + body + b"\r\n")


@dataclass(frozen=True)
class Outcome:
    clean: bool
    detail: str


@dataclass
class SignatureScanner:
    """Finds any of its signatures in the content, like clamd with a signature database."""

    signatures: dict[bytes, str] = field(default_factory=lambda: {
        EICAR: "Eicar-Signature", FALSE_POSITIVE: "Doc.Macro.Heuristic"})
    scanned: list[bytes] = field(default_factory=list)

    def __call__(self, content: bytes, direction: Direction, recipients: list[str], /
                 ) -> Outcome:
        self.scanned.append(content)
        for pattern, name in self.signatures.items():
            if pattern in content:
                return Outcome(False, f"infected: {name} FOUND")
        return Outcome(True, "clean")

    def update_signatures(self) -> None:
        self.signatures.pop(FALSE_POSITIVE, None)


@dataclass
class Q:
    sessions: sessionmaker[Session]
    master: MasterKey
    clock: FakeClock
    scanner: SignatureScanner

    def store(self, body: bytes = b"Bericht", *, state: MessageState = MessageState.QUARANTINED,
              sender: str = "a@partner.example",
              rcpts: tuple[str, ...] = ("asd@jugendamt.example",)) -> str:
        with session_scope(self.sessions) as s:
            qid = store_received(s, self.master, Envelope(
                Direction.INBOUND, sender, list(rcpts), mail(body)),
                actor="test", now=self.clock()).queue_id
            # No scan stage in these tests: put the message where the pipeline would.
            s.execute(update(Message).where(Message.queue_id == qid).values(
                state=state, reason="infected: Doc.Macro.Heuristic FOUND"))
        return qid

    def admin(self, name: str, *, admin: bool = True) -> None:
        with session_scope(self.sessions) as s:
            staff.add_user(s, name, PASSWORD, admin=admin, now=self.clock())

    def approve(self, qid: str, admin: str, reason: str = "false positive, checked",
                ) -> ReleaseResult:
        with session_scope(self.sessions) as s:
            return approve_release(s, qid, admin=admin, reason=reason, now=self.clock(),
                                   master_key=self.master, rescan=self.scanner,
                                   operator="root")

    def message(self, qid: str) -> Message:
        with read_scope(self.sessions) as s:
            message = s.scalars(select(Message).where(Message.queue_id == qid)).one()
            # Detached before read_scope's rollback would expire it.
            s.expunge(message)
            return message

    def released(self, qid: str) -> bool:
        with read_scope(self.sessions) as s:
            return is_released(s, self.message(qid).id)

    def actions(self, qid: str) -> list[tuple[str, str]]:
        with read_scope(self.sessions) as s:
            return [(e.actor, e.action) for e in opened(s, s.scalars(
                select(AuditEntry).where(AuditEntry.queue_id == qid)
                .order_by(AuditEntry.seq)))]

    def verify(self) -> None:
        with read_scope(self.sessions) as s:
            result = audit.verify(s)
        assert result.ok, result.problem


@pytest.fixture
def q(settings: Settings) -> Iterator[Q]:
    engine = make_engine(settings)
    quarantine = Q(make_session_factory(engine), MasterKey.generate(), FakeClock(),
                   SignatureScanner())
    for name in ("alice", "bob"):
        quarantine.admin(name)
    yield quarantine
    # Whatever a test did, the audit chain must still hold.
    quarantine.verify()
    engine.dispose()


# -- four eyes ---------------------------------------------------------------------------------


def test_one_admin_cannot_release_alone(q: Q) -> None:
    qid = q.store(FALSE_POSITIVE)

    first = q.approve(qid, "alice")
    assert first.outcome == ReleaseOutcome.APPROVAL_RECORDED
    assert q.message(qid).state == MessageState.QUARANTINED

    q.clock.advance(60)
    with pytest.raises(QuarantineError, match="a second, different admin must approve"):
        q.approve(qid, "alice", "really, it is fine")

    assert q.message(qid).state == MessageState.QUARANTINED
    assert not q.released(qid)
    assert q.scanner.scanned == [], "nothing is re-scanned before the second admin"
    with read_scope(q.sessions) as s:
        assert show(s, qid).pending_approvals == ("alice",)
        assert [d.action for d in show(s, qid).decisions] == [DecisionAction.RELEASE_APPROVAL]


def test_two_admins_release_after_a_clean_rescan(q: Q) -> None:
    qid = q.store(b"harmless report")
    q.approve(qid, "alice")
    q.clock.advance(300)

    result = q.approve(qid, "bob", "checked with the sender by phone")

    assert result.outcome == ReleaseOutcome.RELEASED
    assert result.approvals == ("alice", "bob")
    assert q.scanner.scanned == [mail(b"harmless report")], "the stored content is re-scanned"
    message = q.message(qid)
    assert message.state == MessageState.DEFERRED
    assert message.next_attempt_at == q.clock()
    assert message.reason == "released by alice and bob"
    assert q.released(qid)
    assert q.actions(qid)[-3:] == [("admin:alice", "quarantine-release-approval"),
                                   ("admin:bob", "quarantine-release-approval"),
                                   ("admin:bob", "quarantine-released")]
    with read_scope(q.sessions) as s:
        view = show(s, qid)
    assert [d.action for d in view.decisions] == [
        DecisionAction.RELEASE_APPROVAL, DecisionAction.RELEASE_APPROVAL, DecisionAction.RELEASE]
    assert view.latest_rescan is not None and view.latest_rescan.verdict == RescanVerdict.CLEAN
    assert view.pending_approvals == ()
    with read_scope(q.sessions) as s:
        assert list_quarantined(s) == [], "a released message has left the quarantine"


def test_still_infected_release_is_refused_and_the_approvals_are_void(q: Q) -> None:
    qid = q.store(EICAR)
    q.admin("carol")
    q.approve(qid, "alice")

    result = q.approve(qid, "bob")

    assert result.outcome == ReleaseOutcome.REFUSED
    assert "Eicar-Signature" in result.detail
    assert q.message(qid).state == MessageState.QUARANTINED
    assert not q.released(qid)
    assert q.actions(qid)[-1] == ("admin:bob", "quarantine-release-refused")
    with read_scope(q.sessions) as s:
        view = show(s, qid)
    assert view.pending_approvals == ()
    assert view.latest_rescan is not None
    assert view.latest_rescan.verdict == RescanVerdict.NOT_CLEAN
    # A fresh start: the next approval is a first one again, whoever gives it.
    assert q.approve(qid, "carol").outcome == ReleaseOutcome.APPROVAL_RECORDED
    assert q.message(qid).state == MessageState.QUARANTINED


def test_unreadable_content_is_not_released(q: Q) -> None:
    qid = q.store(b"report")
    with session_scope(q.sessions) as s:
        message_id = s.scalars(select(Message.id).where(Message.queue_id == qid)).one()
        s.execute(update(SealedContent).where(SealedContent.message_id == message_id).values(
            sealed=seal(MasterKey.generate(), b"report", content_context(qid))))
    q.approve(qid, "alice")

    result = q.approve(qid, "bob")

    assert result.outcome == ReleaseOutcome.REFUSED
    assert "cannot be opened" in result.detail
    assert q.message(qid).state == MessageState.QUARANTINED


@pytest.mark.parametrize(("name", "why"), [
    ("carol", "is not an admin"), ("nobody", "no staff user nobody"), ("dave", "is disabled")])
def test_only_enabled_admins_decide(q: Q, name: str, why: str) -> None:
    q.admin("carol", admin=False)
    q.admin("dave")
    with session_scope(q.sessions) as s:
        staff.set_disabled(s, "dave", True)
    qid = q.store()

    with pytest.raises(QuarantineError, match=why):
        q.approve(qid, name)
    with pytest.raises(QuarantineError, match=why), session_scope(q.sessions) as s:
        delete(s, qid, admin=name, reason="virus", now=q.clock())

    assert q.message(qid).state == MessageState.QUARANTINED
    assert q.actions(qid) == [("test", "received")]


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_a_reason_is_required(q: Q, reason: str) -> None:
    qid = q.store()
    with pytest.raises(QuarantineError, match="a reason is required"):
        q.approve(qid, "alice", reason)
    with pytest.raises(QuarantineError, match="a reason is required"), \
            session_scope(q.sessions) as s:
        delete(s, qid, admin="alice", reason=reason, now=q.clock())
    assert q.actions(qid) == [("test", "received")]


def test_the_database_refuses_a_decision_without_reason(q: Q) -> None:
    qid = q.store()
    with pytest.raises(IntegrityError), session_scope(q.sessions) as s:
        s.add(QuarantineDecision(message_id=q.message(qid).id,
                                 action=DecisionAction.RELEASE_APPROVAL, admin="alice",
                                 reason="  ", at=q.clock()))


@pytest.mark.parametrize("state", [MessageState.HELD, MessageState.DEFERRED,
                                   MessageState.DELIVERED])
def test_only_quarantined_messages_are_released_or_deleted(q: Q, state: MessageState) -> None:
    qid = q.store(state=state)
    with pytest.raises(QuarantineError, match=f"is {state.value}, not quarantined"):
        q.approve(qid, "alice")
    with pytest.raises(QuarantineError, match="not quarantined"), session_scope(q.sessions) as s:
        delete(s, qid, admin="alice", reason="virus", now=q.clock())


def test_unknown_queue_id(q: Q) -> None:
    with pytest.raises(QuarantineError, match="no message with queue id"):
        q.approve("0123456789ABCDEF", "alice")


def test_approvals_from_an_earlier_quarantine_do_not_count(q: Q) -> None:
    qid = q.store()
    q.approve(qid, "alice")
    # Retried by an operator and quarantined again by a worker later on.
    q.clock.advance(3600)
    with session_scope(q.sessions) as s:
        s.execute(update(Message).where(Message.queue_id == qid).values(updated_at=q.clock()))
    q.clock.advance(60)

    assert q.approve(qid, "bob").outcome == ReleaseOutcome.APPROVAL_RECORDED
    assert q.message(qid).state == MessageState.QUARANTINED


def test_an_approval_by_an_admin_who_lost_the_right_does_not_count(q: Q) -> None:
    qid = q.store()
    q.approve(qid, "alice")
    with session_scope(q.sessions) as s:
        staff.set_admin(s, "alice", False)

    assert q.approve(qid, "bob").outcome == ReleaseOutcome.APPROVAL_RECORDED
    assert q.message(qid).state == MessageState.QUARANTINED


# -- delete ------------------------------------------------------------------------------------


def test_delete_removes_the_content_and_keeps_the_record(q: Q) -> None:
    qid = q.store(EICAR, rcpts=("asd@jugendamt.example", "wiju@jugendamt.example"))
    with session_scope(q.sessions) as s:
        messages_before = s.scalar(select(func.count()).select_from(Message))
        deleted = delete(s, qid, admin="alice", reason="EICAR test file, not needed",
                         now=q.clock(), operator="root")
        assert deleted.state == MessageState.REJECTED

    message = q.message(qid)
    assert message.state == MessageState.REJECTED
    assert message.reason == "deleted from quarantine by alice: EICAR test file, not needed"
    with read_scope(q.sessions) as s:
        assert s.get(SealedContent, message.id) is None, "the content must be gone"
        recipients = s.scalars(select(Recipient).where(Recipient.message_id == message.id))
        assert {(r.state, r.response) for r in recipients} == {
            (RecipientState.FAILED, "deleted from quarantine by alice")}
        # No bounce: nothing new was queued.
        assert s.scalar(select(func.count()).select_from(Message)) == messages_before
        entry = opened(s, s.scalars(select(AuditEntry).where(AuditEntry.queue_id == qid)
                                    .order_by(AuditEntry.seq.desc()).limit(1)))[0]
        assert entry is not None and entry.action == "quarantine-deleted"
        assert entry.actor == "admin:alice"
        assert '"os_user":"root"' in entry.detail
        assert "EICAR test file" in entry.detail
        assert [d.action for d in show(s, qid).decisions] == [DecisionAction.DELETE]
        assert not is_released(s, message.id)
    with pytest.raises(QuarantineError, match="is rejected, not quarantined"):
        q.approve(qid, "bob")


# -- looking -----------------------------------------------------------------------------------


def test_list_shows_quarantined_and_on_request_held_messages(q: Q) -> None:
    infected = q.store(EICAR)
    held = q.store(state=MessageState.HELD)
    q.store(state=MessageState.DEFERRED)
    q.approve(infected, "alice")

    with read_scope(q.sessions) as s:
        only = list_quarantined(s)
        both = list_quarantined(s, include_held=True)

    assert [v.queue_id for v in only] == [infected]
    assert only[0].pending_approvals == ("alice",)
    assert only[0].sender == "a@partner.example"
    assert only[0].recipients == ("asd@jugendamt.example",)
    assert only[0].latest_rescan is None and not only[0].needs_admin
    assert [v.queue_id for v in both] == [infected, held]


# -- re-scan after a signature update ----------------------------------------------------------


def test_rescan_all_marks_now_clean_messages_without_releasing_them(q: Q) -> None:
    false_positive = q.store(FALSE_POSITIVE)
    infected = q.store(EICAR)
    held = q.store(b"consent missing", state=MessageState.HELD)
    q.store(b"on its way", state=MessageState.DEFERRED)
    q.scanner.update_signatures()
    calls: list[tuple[int, int]] = []

    summary = rescan_all(q.sessions, q.master, q.scanner,
                         progress=lambda done, total: calls.append((done, total)),
                         actor="operator:root", clock=q.clock)

    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert (summary.total, summary.clean, summary.not_clean, summary.skipped) == (3, 2, 1, 0)
    assert summary.now_clean == (false_positive,), "a held message is not the quarantine's"
    assert q.message(false_positive).state == MessageState.QUARANTINED, "never released alone"
    assert not q.released(false_positive)
    assert q.message(held).state == MessageState.HELD
    with read_scope(q.sessions) as s:
        views = {v.queue_id: v for v in list_quarantined(s, include_held=True)}
    assert views[false_positive].needs_admin
    assert not views[infected].needs_admin
    assert not views[held].needs_admin
    assert q.actions(infected)[-1] == ("operator:root", "quarantine-rescanned")

    # Marked, and still four eyes: two admins release it, after yet another re-scan.
    q.approve(false_positive, "alice")
    assert q.approve(false_positive, "bob").outcome == ReleaseOutcome.RELEASED


def test_a_clean_rescan_flags_only_what_the_scanner_stopped(q: Q) -> None:
    """A forged signature or a partner's rule is not undone by a clean re-scan."""
    forged = q.store(b"harmless, but tampered")
    with session_scope(q.sessions) as s:
        s.execute(update(Message).where(Message.queue_id == forged).values(
            reason="S/MIME signature fails: tampered: the content was altered after signing"))
    summary = rescan_all(q.sessions, q.master, q.scanner, progress=lambda d, t: None,
                         clock=q.clock)
    assert summary.clean == 1 and summary.now_clean == ()
    with read_scope(q.sessions) as s:
        [view] = list_quarantined(s)
    assert view.latest_rescan is not None and not view.needs_admin


def test_rescan_all_skips_messages_that_left_meanwhile(q: Q) -> None:
    first = q.store(b"one")
    second = q.store(b"two")

    def progress(done: int, total: int) -> None:
        if done == 1:
            # An admin deletes the second message while the run is on the first.
            with session_scope(q.sessions) as s:
                delete(s, second, admin="alice", reason="not wanted", now=q.clock())

    summary = rescan_all(q.sessions, q.master, q.scanner, progress=progress, clock=q.clock)

    assert (summary.total, summary.clean, summary.skipped) == (2, 1, 1)
    assert summary.now_clean == (first,)


def test_rescan_all_with_nothing_to_do(q: Q) -> None:
    calls: list[tuple[int, int]] = []
    summary = rescan_all(q.sessions, q.master, q.scanner,
                         progress=lambda d, t: calls.append((d, t)))
    assert summary.total == 0 and calls == [(0, 0)]


def test_rescan_all_keeps_what_it_recorded_when_the_scanner_fails(q: Q) -> None:
    q.store(b"one")
    q.store(b"two")

    class Broken(Exception):
        pass

    seen: list[bytes] = []

    def flaky(content: bytes, direction: Direction, recipients: list[str], /) -> Outcome:
        seen.append(content)
        if len(seen) == 2:
            raise Broken("clamd went away")
        return Outcome(True, "clean")

    with pytest.raises(Broken):
        rescan_all(q.sessions, q.master, flaky, progress=lambda d, t: None, clock=q.clock)

    with read_scope(q.sessions) as s:
        marked = [v for v in list_quarantined(s) if v.needs_admin]
    assert len(marked) == 1


def test_release_time_is_the_callers(q: Q) -> None:
    qid = q.store()
    q.approve(qid, "alice")
    q.clock.advance(timedelta(days=2).total_seconds())
    q.approve(qid, "bob")
    assert q.message(qid).next_attempt_at == q.clock()
