"""``xgate consent`` end to end through ``gateway.cli.main``, on SQLite and PostgreSQL.

Releases are recorded, changed, revoked and read back; the dry run's verdicts and exit
status; the sealed scan's round trip; the held reports and a second person's approval.
Errors are one line without a traceback, and the audit chain holds after every test.
"""

from __future__ import annotations

import io
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit.view import opened
from gateway.clock import system_clock
from gateway.consent.holds import CONSENT_HOLD_PREFIX, STATUTORY_HOLD_PREFIX
from gateway.consent.records import release_mailbox
from gateway.db import make_engine, make_session_factory, read_scope, session_scope
from gateway.models import AuditEntry, Direction, HoldKind, Message, MessageState
from gateway.policy.consent import local_date, normalise_case
from gateway.queue.spool import Envelope, store_received
from gateway.settings import load_settings
from gateway.staff import users as staff
from mailboxes.directory import add_mailbox
from mailboxes.models import Mailbox
from tests.support.cli import Cli, master_key

PASSWORD = "correct horse battery staple"
CASE = "51.2-1234/2026"
PARTNER = "Jugendamt B"
AT_PARTNER = "asd@jugendamt-b.example"
# Relative to today, so the release is current whenever the suite runs.
TODAY = local_date(system_clock(), ZoneInfo("Europe/Berlin"))
FROM = (TODAY - timedelta(days=30)).isoformat()
UNTIL = (TODAY + timedelta(days=365)).isoformat()
SCAN = b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n"


@dataclass
class Office:
    cli: Cli
    sessions: sessionmaker[Session]
    master: MasterKey
    monkeypatch: pytest.MonkeyPatch

    def _password(self, password: str) -> None:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))

    def act(self, *args: str, by: str = "alice", password: str = PASSWORD,
            ok: bool = True) -> tuple[int, str, str]:
        """A consent command done as staff user ``by``, the password on standard input."""
        self._password(password)
        return self.cli("consent", *args, "--by", by, "--password-stdin", ok=ok)

    def act_fails(self, *args: str, by: str = "alice", password: str = PASSWORD) -> str:
        self._password(password)
        return self.cli.fails("consent", *args, "--by", by, "--password-stdin")

    def add(self, *extra: str, category: str = "Hilfeplan", by: str = "alice") -> int:
        _, out, _ = self.act(*release_args(category=category), *extra, by=by)
        match = re.match(r"release (\d+) v1 recorded$", out.splitlines()[0])
        assert match, out
        return int(match.group(1))

    def check(self, *args: str) -> tuple[int, str]:
        code, out, err = self.cli("consent", "check", "--case", CASE,
                                  "--recipient", AT_PARTNER, *args, ok=False)
        assert err == "", err
        return code, out

    def store_outbound(self, *, state: MessageState, reason: str | None = None,
                       kind: HoldKind | None = None) -> str:
        """An outbound report from bob for CASE, in ``state`` (held for ``kind``)."""
        with session_scope(self.sessions) as s:
            qid = store_received(s, self.master, Envelope(
                Direction.OUTBOUND, "bob@jugendamt.example", [AT_PARTNER],
                b"From: bob@jugendamt.example\r\nTo: " + AT_PARTNER.encode()
                + b"\r\nSubject: Bericht\r\n\r\nHilfeplan\r\n", auth_user="bob"),
                actor="test", now=system_clock()).queue_id
            # The facts the consent stage writes, so re-checks and views find the case.
            facts = {"consent:case": CASE, "consent:category": "Hilfeplan",
                     "consent:legal_basis": "§ 8a SGB VIII"}
            s.execute(update(Message).where(Message.queue_id == qid).values(
                state=state, reason=reason, facts=json.dumps(facts), hold_kind=kind,
                case_reference=normalise_case(CASE)))
        return qid

    def state(self, qid: str) -> MessageState:
        with read_scope(self.sessions) as s:
            return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


def release_args(*, category: str = "Hilfeplan") -> list[str]:
    return ["add", "--case", CASE, "--subject", "Max Muster", "--subject", "Lea Muster",
            "--granted-by", "Erika Muster", "--role", "parent", "--category", category,
            "--partner", PARTNER, "--address", "Beratung@Stelle.example",
            "--purpose", "Hilfeplanung", "--from", FROM, "--until", UNTIL]


@pytest.fixture
def office(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Office]:
    settings = load_settings(cli.config)
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        # Neither is an admin: any active staff user may record consent.
        staff.add_user(s, "alice", PASSWORD)
        staff.add_user(s, "bob", PASSWORD)
    cli("partner", "add", PARTNER, "--domain", "jugendamt-b.example")
    yield Office(cli, sessions, master_key(settings), monkeypatch)
    with read_scope(sessions) as s:
        assert audit.verify(s).ok
    engine.dispose()


def test_add_list_show_and_change(office: Office) -> None:
    cli = office.cli
    scan = cli.file("Entbindung.pdf", SCAN)
    release = office.add("--document", scan, "--note", "im Hausbesuch unterschrieben")

    _, out, _ = cli("consent", "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "VERSION", "CASE", "STATE", "VALID", "CATEGORIES",
                              "RECIPIENTS"]
    assert row.split()[:4] == [str(release), "v1", CASE, "active"]
    assert f"{FROM} to {UNTIL}" in row
    assert row.endswith("Jugendamt B (partner), beratung@stelle.example")
    _, out, _ = office.act("list", "--case", "  51.2-1234/2026 ", "--json", by="bob")
    [view] = json.loads(out)
    assert view["data_subjects"] == ["Max Muster", "Lea Muster"]
    assert (view["id"], view["version"], view["state"]) == (release, 1, "active")
    assert view["recipients"] == [{"kind": "partner", "value": PARTNER},
                                  {"kind": "address", "value": "beratung@stelle.example"}]
    assert view["document"]["content_type"] == "application/pdf"
    assert view["document"]["size"] == len(SCAN)
    _, out, _ = cli("consent", "list", "--case", "other")
    assert out.strip() == "no releases for case other"

    # Bob narrows it: one category (by its alias), one recipient, a new role spelling.
    _, out, _ = office.act("change", str(release), "--category", "Gutachten",
                           "--address", AT_PARTNER, "--role", "young-person",
                           "--note", "Telefonat: nur noch das Gutachten", "--expect-version",
                           "1", by="bob")
    assert out.strip() == f"release {release} v2 recorded"
    assert office.act_fails("change", str(release), "--purpose", "x", "--note", "n",
                            "--expect-version", "1") == (
        f"release {release} is at version 2, not 1; look at it again")

    _, out, _ = office.act("show", str(release), "--json")
    v1, v2 = json.loads(out)
    assert (v1["version"], v1["recorded_by"], v2["version"], v2["recorded_by"]) == (
        1, "alice", 2, "bob")
    assert v1["categories"] == ["Hilfeplan"]
    assert v2["categories"] == ["psychologisches Gutachten"]
    assert v2["recipients"] == [{"kind": "address", "value": AT_PARTNER}]
    assert v2["granted_by"] == {"name": "Erika Muster", "role": "young person"}
    # What the change did not name stays as it was, the scan included.
    assert v2["data_subjects"] == ["Max Muster", "Lea Muster"]
    assert (v2["purpose"], v2["valid_from"], v2["valid_until"]) == ("Hilfeplanung", FROM, UNTIL)
    assert v2["document"] == v1["document"]

    _, out, _ = office.act("show", str(release))
    lines = out.splitlines()
    assert lines[0] == f"release {release}, case {CASE}: active (current version v2)"
    assert [line.split(":")[0] for line in lines if line.startswith("v")] == ["v1", "v2"]
    assert re.search(r"^v1: recorded \d{4}-\d\d-\d\d \d\d:\d\d CES?T by alice$", out, re.M)
    assert "  note:          im Hausbesuch unterschrieben" in lines
    assert "  note:          Telefonat: nur noch das Gutachten" in lines
    assert out.count("  document:      Entbindung.pdf (application/pdf, "
                     f"{len(SCAN)} bytes, sha256 ") == 2

    actions = [a for a in cli.audit_actions() if a[1].startswith("consent-")]
    assert actions == [("alice", "consent-added"), ("bob", "consent-listed"),
                       ("bob", "consent-changed"), ("alice", "consent-read"),
                       ("alice", "consent-read")]


def test_reading_names_needs_a_person_and_is_audited(office: Office) -> None:
    release = office.add()
    cli = office.cli
    # The table shows no names: nobody is asked, nothing recorded.
    _, out, _ = cli("consent", "list")
    assert "Max Muster" not in out and "Erika Muster" not in out
    assert cli.fails("consent", "list", "--json") == (
        "--json shows the names of the people concerned: say who reads them with --by USER "
        "(asked for the password)")
    assert office.act_fails("show", str(release), password="falsch") == (
        "authentication as alice failed")
    assert office.act_fails("list", "--json", password="falsch") == (
        "authentication as alice failed")
    assert office.act_fails("show", "999") == "no release 999"
    _, out, _ = office.act("show", str(release), by="bob")
    assert "  data subjects: Max Muster, Lea Muster" in out
    with read_scope(office.sessions) as s:
        entries = opened(s, s.scalars(select(AuditEntry).where(AuditEntry.action.in_(
            ["consent-read", "consent-listed"])).order_by(AuditEntry.seq)))
        assert [(e.actor, e.action, json.loads(e.detail)) for e in entries] == [
            ("bob", "consent-read", {"release": release, "versions": [1], "via": "cli"})]
        assert "Muster" not in entries[0].detail
        assert audit.verify(s).ok


def test_check_revoke_and_deny(office: Office) -> None:
    release = office.add()

    code, out = office.check("--category", "Hilfeplan")
    assert code == 0
    assert out.splitlines()[0] == "verdict: allow"
    assert out.splitlines()[-1] == f"releases: {release} v1"
    code, out = office.check("--category", "Hilfeplan", "--json")
    assert code == 0 and json.loads(out) == {
        "verdict": "allow", "reasons": [json.loads(out)["reasons"][0]],
        "releases": [{"id": release, "version": 1}], "ready": False}

    code, out = office.check("--category", "Schulbericht")
    assert code == 1
    assert out.splitlines() == [
        "verdict: hold",
        f"  - the releases for case {CASE} do not cover category Schulbericht",
        "releases: none"]
    after = (TODAY + timedelta(days=400)).isoformat()
    code, out = office.check("--category", "Hilfeplan", "--date", after, "--json")
    assert code == 1 and json.loads(out)["verdict"] == "deny"
    assert f"expired after {UNTIL}" in json.loads(out)["reasons"][0]

    an_hour_ago = (system_clock() - timedelta(hours=1)).isoformat()
    _, out, _ = office.act("revoke", str(release), "--reason", "Widerruf per Brief",
                           "--at", an_hour_ago, by="bob")
    assert re.fullmatch(rf"release {release} v2 recorded: revoked at \d{{4}}-.* CES?T\n", out)
    assert office.act_fails("revoke", str(release), "--reason", "noch einmal").startswith(
        f"release {release} was already revoked at ")
    assert office.act_fails("change", str(release), "--purpose", "x", "--note", "n") == (
        f"release {release} was revoked; record a new release instead")

    code, out = office.check("--category", "Hilfeplan", "--json")
    decision = json.loads(out)
    assert code == 1 and decision["verdict"] == "deny"
    assert decision["releases"] == [{"id": release, "version": 2}]
    code, out = office.check("--category", "Hilfeplan")
    assert code == 1 and out.startswith("verdict: deny\n")
    _, out, _ = office.act("list", "--json")
    assert [(v["state"], v["revoked_by"]) for v in json.loads(out)] == [("revoked", "bob")]


def test_document_round_trip(office: Office, tmp_path: Path) -> None:
    release = office.add("--document", office.cli.file("scan.pdf", SCAN))
    out_file = tmp_path / "out" / "copy.pdf"
    out_file.parent.mkdir()

    _, out, _ = office.act("document", str(release), "--output", str(out_file), by="bob")
    assert out.strip() == (f"release {release} v1: scan.pdf (application/pdf, {len(SCAN)} "
                           f"bytes) written to {out_file}")
    assert out_file.read_bytes() == SCAN
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600

    assert office.act_fails("document", str(release), "--output", str(out_file)) == (
        f"{out_file} exists already; name a new file")
    assert out_file.read_bytes() == SCAN
    assert office.act_fails("document", str(release), "--version", "7", "--output",
                            str(tmp_path / "v7.pdf")) == f"release {release} has no version 7"
    assert not (tmp_path / "v7.pdf").exists(), "no file left behind by a refusal"
    bare = office.add()
    assert office.act_fails("document", str(bare), "--output", str(tmp_path / "b.pdf")) == (
        f"release {bare} v1 has no document")

    reads = [a for a in office.cli.audit_actions() if a[1] == "consent-document-read"]
    assert reads == [("bob", "consent-document-read")], "refusals are not recorded as reads"


def test_refusals_are_one_line(office: Office) -> None:
    args = release_args()
    assert office.act_fails(*args, password="not the password") == (
        "authentication as alice failed")
    assert office.act_fails(*args, by="nobody") == "authentication as nobody failed"
    _, out, _ = office.cli("consent", "list")
    assert out.strip() == "no releases"

    def swap(option: str, value: str) -> list[str]:
        changed = list(args)
        changed[changed.index(option) + 1] = value
        return changed

    assert office.act_fails(*swap("--partner", "Nirgendwo")) == (
        "no partner 'Nirgendwo' in the key directory")
    assert office.act_fails(*swap("--category", "Zeugnis")).startswith(
        "unknown category 'Zeugnis'; the catalogue has: Hilfeplan, ")
    assert office.act_fails(*swap("--from", "2026-02-30")) == (
        "--from: not a date in the form YYYY-MM-DD: '2026-02-30'")
    assert office.act_fails(*swap("--until", "tomorrow")) == (
        "--until: not a date in the form YYYY-MM-DD: 'tomorrow'")
    assert office.act_fails(*swap("--role", "aunt")) == (
        "--role: unknown role 'aunt'; one of: parent, guardian, young-person, other")
    assert office.act_fails(*swap("--until", "2000-01-01")) == (
        f"valid from {FROM} is after valid until 2000-01-01")
    missing = office.cli.tmp / "missing.pdf"
    assert office.act_fails(*args, "--document", str(missing)) == (
        f"cannot read the release document {missing}: No such file or directory")
    office.monkeypatch.setenv("XGATE_CONSENT__MAX_DOCUMENT_BYTES", "1024")
    assert office.act_fails(*args, "--document", office.cli.file("big.pdf", b"x" * 5000)) == (
        "the release document is larger than 1024 bytes")
    assert office.act_fails("revoke", "1", "--reason", "x", "--at", "2026-03-01T10:00") == (
        "--at: give a time zone, e.g. 2026-03-01T10:00+01:00")
    assert office.act_fails("revoke", "1", "--reason", "x") == "no release 1"
    assert office.act_fails("show", "999") == "no release 999"
    assert office.cli.fails("consent", "check", "--case", CASE, "--category", "Hilfeplan",
                            "--recipient", AT_PARTNER, "--date", "1.3.2026") == (
        "--date: not a date in the form YYYY-MM-DD: '1.3.2026'")
    assert not [a for a in office.cli.audit_actions() if a[1].startswith("consent-")]


def test_held_reports_and_approval(office: Office) -> None:
    cli = office.cli
    _, out, _ = cli("consent", "held")
    assert out.strip() == "no reports held by the consent gate"
    _, out, _ = cli("consent", "held", "--json")
    assert json.loads(out) == []

    assert office.act_fails("approve", "NOPE", "--reason", "x") == "no outbound message NOPE"
    queued = office.store_outbound(state=MessageState.RECEIVED)
    assert office.act_fails("approve", queued, "--reason", "Gefährdung") == (
        f"message {queued} is not waiting for the approval of a statutory transfer "
        "(it is received)")

    statutory = office.store_outbound(
        state=MessageState.HELD, kind=HoldKind.STATUTORY_APPROVAL,
        reason=f"{STATUTORY_HOLD_PREFIX} on § 8a SGB VIII: {AT_PARTNER}: approval needed")
    _, out, _ = cli("consent", "held")
    assert out.splitlines()[0].startswith(f"{statutory}  ")
    assert f"case {CASE}, Hilfeplan  bob@jugendamt.example -> {AT_PARTNER}" in out
    assert "waiting for a second person's approval (xgate consent approve)" in out
    _, out, _ = cli("consent", "held", "--json")
    [held] = json.loads(out)
    assert (held["queue_id"], held["case"], held["legal_basis"], held["awaiting_approval"]) == (
        statutory, CASE, "§ 8a SGB VIII", True)

    assert office.act_fails("approve", statutory, "--reason", "eilig", by="bob") == (
        "bob sent this message; a second, different person must approve it")
    _, out, _ = office.act("approve", statutory, "--reason", "akute Gefährdung")
    assert out.strip() == (f"{statutory}: transfer on a legal basis approved by alice; it "
                           "goes through the consent gate again now")
    assert office.state(statutory) == MessageState.DEFERRED

    # A report held for want of consent is woken by the release that covers its case.
    waiting = office.store_outbound(state=MessageState.HELD, kind=HoldKind.CONSENT,
                                    reason=f"{CONSENT_HOLD_PREFIX}no release for case {CASE}")
    _, out, _ = office.act(*release_args())
    assert out.splitlines()[1] == f"re-checked: {waiting}"
    assert office.state(waiting) == MessageState.DEFERRED
    _, out, _ = cli("consent", "held")
    assert out.strip() == "no reports held by the consent gate"

    # Without the sender's justification no approval can let it go: refused, not recorded.
    unjustified = office.store_outbound(
        state=MessageState.HELD, kind=HoldKind.STATUTORY_APPROVAL,
        reason=f"{STATUTORY_HOLD_PREFIX} on § 8a SGB VIII: {AT_PARTNER}: no current release "
               "covers this message; statutory basis invoked: § 8a SGB VIII, a justification "
               "is required, approval by a second person other than the sender is required")
    assert office.act_fails("approve", unjustified, "--reason", "dringend") == (
        f"message {unjustified} has no justification (X-Xgate-Justification): a transfer on "
        "a legal basis does not leave without one, approved or not; the sender has to send "
        "it again with the reasons in that field")
    assert office.state(unjustified) == MessageState.HELD
    assert [a for a in cli.audit_actions() if a[1] == "statutory-approved"] == [
        ("alice", "statutory-approved")]


def test_add_with_a_mailbox_puts_the_release_in_that_team(office: Office) -> None:
    with session_scope(office.sessions) as s:
        add_mailbox(s, "asd-nord@jugendamt.example", "ASD Nord")
    assert office.act_fails(*release_args(), "--mailbox", "niemand@jugendamt.example") == (
        "no shared mailbox niemand@jugendamt.example")
    with read_scope(office.sessions) as s:
        box = s.scalars(select(Mailbox.id).where(
            Mailbox.address == "asd-nord@jugendamt.example")).one()
    # The address in any case, as mail addresses are.
    assert release_mailbox_of(office, office.add("--mailbox", "ASD-Nord@jugendamt.example")) == box
    assert release_mailbox_of(office, office.add()) is None


def release_mailbox_of(office: Office, release: int) -> int | None:
    with read_scope(office.sessions) as s:
        return release_mailbox(s, release)
