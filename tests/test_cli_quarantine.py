"""``xgate quarantine list/show/release/delete/rescan`` end to end, on SQLite and PostgreSQL.

In process (tests.support.cli.Cli), so the test scanner can stand in for clamd; errors are
one line without a traceback, and the audit chain holds after every test.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit.view import opened
from gateway.cli import quarantine as cli_quarantine
from gateway.clock import system_clock
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import AuditEntry, Direction, Message, MessageState, SealedContent
from gateway.quarantine.records import Rescanner, ScanOutcome
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings, load_settings
from gateway.staff import users as staff
from tests.support.cli import Cli, master_key
from tests.test_quarantine import EICAR, FALSE_POSITIVE, PASSWORD, SignatureScanner, mail


@dataclass
class Setup:
    cli: Cli
    sessions: sessionmaker[Session]
    master: MasterKey
    scanner: SignatureScanner
    monkeypatch: pytest.MonkeyPatch

    def store(self, body: bytes, state: MessageState = MessageState.QUARANTINED) -> str:
        with session_scope(self.sessions) as s:
            qid = store_received(s, self.master, Envelope(
                Direction.INBOUND, "a@partner.example", ["asd@jugendamt.example"], mail(body)),
                actor="test", now=system_clock()).queue_id
            s.execute(update(Message).where(Message.queue_id == qid).values(
                state=state, reason="infected: Doc.Macro.Heuristic FOUND"))
        return qid

    def as_admin(self, password: str = PASSWORD) -> None:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))

    def release(self, qid: str, admin: str, reason: str = "false positive",
                password: str = PASSWORD) -> tuple[int, str, str]:
        self.as_admin(password)
        return self.cli("quarantine", "release", qid, "--admin", admin, "--reason", reason,
                        "--password-stdin", ok=False)

    def state(self, qid: str) -> MessageState:
        with read_scope(self.sessions) as s:
            return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


@pytest.fixture
def setup(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    settings: Settings = load_settings(cli.config)
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        staff.add_user(s, "alice", PASSWORD, admin=True)
        staff.add_user(s, "bob", PASSWORD, admin=True)
        staff.add_user(s, "carol", PASSWORD)
    scanner = SignatureScanner()

    def fake_rescanner(_settings: Settings) -> Rescanner:
        return scanner

    monkeypatch.setattr(cli_quarantine, "rescanner_for", fake_rescanner)
    yield Setup(cli, sessions, master_key(settings), scanner, monkeypatch)
    with read_scope(sessions) as s:
        assert audit.verify(s).ok
    engine.dispose()


def test_four_eyes_release_end_to_end(setup: Setup) -> None:
    qid = setup.store(FALSE_POSITIVE)
    setup.scanner.update_signatures()

    code, out, _ = setup.release(qid, "alice")
    assert code == 0 and "approval 1 of 2 recorded" in out

    code, out, err = setup.release(qid, "alice", "still fine")
    assert code == 1 and "a second, different admin must approve" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert setup.state(qid) == MessageState.QUARANTINED

    code, out, err = setup.release(qid, "bob", "checked with the sender")
    assert code == 0, err
    assert "released after a clean re-scan" in out and "alice and bob" in out
    assert setup.state(qid) == MessageState.DEFERRED

    actions = [a for a in setup.cli.audit_actions() if a[1].startswith("quarantine-")]
    assert actions == [("admin:alice", "quarantine-release-approval"),
                       ("admin:bob", "quarantine-release-approval"),
                       ("admin:bob", "quarantine-released")]
    with read_scope(setup.sessions) as s:
        details = [e.detail for e in opened(s, s.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith("quarantine-"))))]
    assert all('"os_user":' in d for d in details), "the OS user is recorded too"


def test_release_of_infected_content_is_refused(setup: Setup) -> None:
    qid = setup.store(EICAR)
    setup.release(qid, "alice")

    code, out, err = setup.release(qid, "bob")

    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xgate: error: release of")
    assert "Eicar-Signature" in lines[0] and "stays quarantined" in lines[0]
    assert setup.state(qid) == MessageState.QUARANTINED
    _, out, _ = setup.cli("quarantine", "show", qid)
    assert "release-refused" in out and "not-clean" in out
    assert "approvals:     0 of 2" in out


def test_release_and_delete_refusals_are_one_line(setup: Setup) -> None:
    qid = setup.store(b"report")
    cli = setup.cli

    setup.as_admin("wrong password")
    assert cli.fails("quarantine", "release", qid, "--admin", "bob", "--reason", "x",
                     "--password-stdin") == "authentication as bob failed"
    setup.as_admin("whatever it is")
    assert cli.fails("quarantine", "delete", qid, "--admin", "nobody", "--reason", "x",
                     "--password-stdin") == "authentication as nobody failed"
    setup.as_admin()
    assert "is not an admin" in cli.fails("quarantine", "release", qid, "--admin", "carol",
                                          "--reason", "x", "--password-stdin")
    setup.as_admin()
    assert cli.fails("quarantine", "release", qid, "--admin", "alice", "--reason", "  ",
                     "--password-stdin") == "a reason is required"
    setup.as_admin()
    assert "no message with queue id" in cli.fails(
        "quarantine", "delete", "0123456789ABCDEF", "--admin", "alice", "--reason", "x",
        "--password-stdin")
    # No terminal and no --password-stdin: nobody to ask.
    setup.monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "--password-stdin" in cli.fails("quarantine", "release", qid, "--admin", "alice",
                                           "--reason", "x")
    assert "no message with queue id" in cli.fails("quarantine", "show", "nope")
    assert setup.state(qid) == MessageState.QUARANTINED
    assert not [a for a in cli.audit_actions() if a[1].startswith("quarantine-")]


def test_delete_end_to_end(setup: Setup) -> None:
    qid = setup.store(EICAR)
    setup.as_admin()

    _, out, _ = setup.cli("quarantine", "delete", qid, "--admin", "alice", "--reason",
                          "EICAR test file", "--password-stdin")

    assert f"{qid} deleted from quarantine by alice" in out
    assert setup.state(qid) == MessageState.REJECTED
    with read_scope(setup.sessions) as s:
        message_id = s.scalars(select(Message.id).where(Message.queue_id == qid)).one()
        assert s.get(SealedContent, message_id) is None
    assert ("admin:alice", "quarantine-deleted") in setup.cli.audit_actions()
    _, out, _ = setup.cli("quarantine", "list")
    assert out.strip() == "no quarantined messages"


def test_list_show_and_json(setup: Setup) -> None:
    assert setup.cli("quarantine", "list")[1].strip() == "no quarantined messages"
    infected = setup.store(EICAR)
    held = setup.store(b"consent missing", MessageState.HELD)
    setup.release(infected, "alice")

    _, out, _ = setup.cli("quarantine", "list")
    assert infected in out and held not in out and "1/2" in out
    assert "reason: infected: Doc.Macro.Heuristic FOUND" in out
    assert "EICAR" not in out, "never message content"
    _, out, _ = setup.cli("quarantine", "list", "--held")
    assert infected in out and held in out

    _, out, _ = setup.cli("quarantine", "list", "--held", "--json")
    rows = json.loads(out)
    assert [r["queue_id"] for r in rows] == [infected, held]
    assert rows[0]["pending_approvals"] == ["alice"]
    assert rows[0]["latest_rescan"] is None and rows[0]["needs_admin"] is False

    _, out, _ = setup.cli("quarantine", "show", infected.lower())
    assert f"queue id:      {infected}" in out
    assert "approvals:     1 of 2 (alice)" in out
    assert "release-approval" in out and "alice: false positive" in out
    # Held messages are not released by two admins here: no approvals to count.
    _, out, _ = setup.cli("quarantine", "show", held)
    assert "state:         held" in out and "approvals:" not in out


def test_rescan_marks_for_an_admin_with_a_progress_bar(setup: Setup) -> None:
    false_positive = setup.store(FALSE_POSITIVE)
    infected = setup.store(EICAR)
    setup.store(b"consent missing", MessageState.HELD)
    setup.scanner.update_signatures()

    _, out, err = setup.cli("quarantine", "rescan")

    assert "re-scanned 3 of 3 messages: 2 clean, 1 not clean" in out
    assert f"now clean, waiting for two admins to release: {false_positive}" in out
    bars = err.strip().splitlines()
    assert bars[0] == f"re-scanning [{'.' * 30}] 0/3"
    assert bars[-1] == f"re-scanning [{'#' * 30}] 3/3"
    assert setup.state(false_positive) == MessageState.QUARANTINED, "not released"

    _, out, _ = setup.cli("quarantine", "list")
    block = out.split(infected)[0]
    assert false_positive in block and "now clean — needs an admin" in block
    assert out.count("now clean — needs an admin") == 1
    assert any(actor.startswith("operator:") and action == "quarantine-rescanned"
               for actor, action in setup.cli.audit_actions())


def test_rescan_without_a_reachable_scanner_is_one_line(setup: Setup) -> None:
    setup.store(b"report")
    setup.monkeypatch.undo()
    # The installation's own managed clamd is not running in this test.
    code, _, err = setup.cli("quarantine", "rescan", ok=False)
    # The progress bar's line, then the one error line, no traceback.
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("xgate: error: virus scanner unavailable: ")


def test_release_with_the_scanner_down_keeps_the_first_approval(setup: Setup) -> None:
    errors = pytest.importorskip("scanning.errors")
    qid = setup.store(b"report")
    setup.release(qid, "alice")

    def down(_content: bytes, _direction: object, _recipients: object, /) -> ScanOutcome:
        raise errors.ScannerUnavailable("clamd: connection refused")

    setup.monkeypatch.setattr(cli_quarantine, "rescanner_for", lambda _settings: down)
    setup.as_admin()
    message = setup.cli.fails("quarantine", "release", qid, "--admin", "bob", "--reason", "x",
                              "--password-stdin")

    assert message == "virus scanner unavailable: clamd: connection refused"
    assert setup.state(qid) == MessageState.QUARANTINED
    _, out, _ = setup.cli("quarantine", "show", qid)
    assert "approvals:     1 of 2 (alice)" in out, "bob's approval was rolled back"
