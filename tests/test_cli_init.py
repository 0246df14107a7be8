"""``xgate init``, ``db``, ``mailbox`` and ``user`` as an operator runs them: the real command
in a subprocess, on the SQLite database that init creates."""

from __future__ import annotations

import sqlite3
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import func, select

from gateway.cli.demo import DEMO_MAILBOX, DEMO_SENDER
from gateway.db import session_scope
from gateway.demo.tickets import (
    CHILDMINDER,
    COUNSELLING,
    PARENTS,
    SENDERS,
    SUBJECT_HTML,
    SUBJECT_PLACEMENT,
    SUBJECT_REPORT,
)
from gateway.keydir.own_keys import list_own_keys
from gateway.models import AuditEntry, Direction, Message, MessageState, utcnow
from gateway.staff import second_factor
from gateway.staff.users import find_user, sender_addresses, verify_password
from mailboxes.directory import find_mailbox
from mailboxes.members import role_in
from mailboxes.models import MemberRole
from mailboxes.tickets.models import Article, ArticleKind, Ticket
from mailboxes.tickets.queries import list_tickets
from mailboxes.tickets.summaries import Protection, first_protection
from tests.support.cli import (
    dispose,
    init_installation,
    installation_services,
    installation_settings,
    run_xgate,
)
from tests.support.pipeline import drain, filed_copies


def test_init_creates_a_working_installation(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    result = run_xgate("init", inst)
    assert result.returncode == 0, result.stderr
    assert "generated master key" in result.stdout
    config = inst / "xgate.toml"
    assert config.read_text().startswith("# xgate configuration")
    key = inst / "keys" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for sub in ("keys", "tls", "metrics"):
        assert (inst / sub).is_dir()
    # Personal data lives here: nothing is readable by other users.
    assert stat.S_IMODE((inst / "xgate.db").stat().st_mode) & 0o077 == 0
    with sqlite3.connect(inst / "xgate.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"messages", "audit_log", "mailboxes"} <= tables
    current = run_xgate("-c", config, "db", "current")
    assert current.returncode == 0 and "up to date" in current.stdout


def test_init_again_keeps_everything(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    config = init_installation(inst)
    key_before = (inst / "keys" / "master.key").read_text()
    config.write_text(config.read_text().replace("processes = 2", "processes = 3"))
    result = run_xgate("init", inst)
    assert result.returncode == 0, result.stderr
    for kept in ("kept existing configuration", "kept existing master key",
                 "kept existing database"):
        assert kept in result.stdout
    assert (inst / "keys" / "master.key").read_text() == key_before
    assert "processes = 3" in config.read_text()


def test_init_demo_creates_certificate_mailbox_and_user(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    result = run_xgate("init", inst, "--demo")
    assert result.returncode == 0, result.stderr
    assert (inst / "tls" / "cert.pem").is_file()
    assert stat.S_IMODE((inst / "tls" / "key.pem").stat().st_mode) == 0o600
    passwords = {li.split()[4]: li.rsplit(" ", 1)[1] for li in result.stdout.splitlines()
                 if "created demo staff user" in li}
    assert set(passwords) == {"demo", "sb", "admin"}
    password = passwords["demo"]
    # The caseworker's and the admin's, in that order (both use the web app).
    totp, admin_totp = [li.rsplit(" ", 1)[1] for li in result.stdout.splitlines()
                        if "TOTP secret" in li]
    listing = run_xgate("-c", inst / "xgate.toml", "mailbox", "list")
    assert DEMO_MAILBOX in listing.stdout
    services = installation_services(installation_settings(inst / "xgate.toml"))
    try:
        with session_scope(services.sessions) as session:
            assert verify_password(session, "demo", password) is not None
            assert verify_password(session, "sb", passwords["sb"]) is not None
            # The demo caseworker can log in to the web app: the printed TOTP secret is theirs.
            demo_user = find_user(session, "demo")
            assert demo_user is not None
            assert second_factor.verify_code(session, demo_user.id, pyotp.TOTP(totp).now(),
                                             services.master_key, utcnow())
            # The demo admin reaches the admin console the same way.
            admin = verify_password(session, "admin", passwords["admin"])
            assert admin is not None and admin.admin
            assert second_factor.verify_code(session, admin.id,
                                             pyotp.TOTP(admin_totp).now(),
                                             services.master_key, utcnow())
            # Made through the same audited actions as 'xgate user add' and 'mailbox add'.
            actions = {e.action for e in session.scalars(select(AuditEntry))}
            assert {"user-added", "mailbox-added"} <= actions
            # Demo keys: S/MIME and OpenPGP for the mailbox and the demo sender, sealed.
            kinds = {(k.address, k.kind.value) for k in list_own_keys(session)}
            assert kinds == {(a, kind) for a in (DEMO_MAILBOX, DEMO_SENDER)
                             for kind in ("smime", "openpgp")}
    finally:
        dispose(services)
    assert (inst / "keys" / "demo-ca.pem").is_file()
    explained = run_xgate("-c", inst / "xgate.toml", "policy", "explain", "--from",
                          "partner@elsewhere.example", "--to", DEMO_MAILBOX)
    assert "smime-encrypted mail is decrypted (tries 1 own key(s)" in explained.stdout
    again = run_xgate("init", inst, "--demo")
    assert again.returncode == 0, again.stderr
    assert "kept existing demo mailbox" in again.stdout
    assert "password not shown again" in again.stdout
    assert password not in again.stdout and totp not in again.stdout
    assert "kept demo staff user demo lead of" in again.stdout
    assert "kept existing demo mail" in again.stdout and "queued" not in again.stdout
    # Where to log in, at the end; and the same from 'xgate demo web' (the make run banner).
    hint = ["the staff web app: open http://127.0.0.1:8025/ once 'xgate serve' runs,",
            "  log in as demo with its password and a one-time code from an authenticator app",
            "  that has its secret (both printed once, when the user was created);",
            "  the admin console: log in as admin the same way"]
    assert result.stdout.splitlines()[-5:-1] == hint == again.stdout.splitlines()[-5:-1]
    web = run_xgate("-c", inst / "xgate.toml", "demo", "web").stdout.splitlines()
    assert web[:4] == hint
    # ... and the citizen portal, which the demo switches on.
    portal = ("the citizen portal (no login; what is sent there becomes a ticket): open "
              "http://127.0.0.1:8026/")
    assert result.stdout.splitlines()[-1] == portal == web[-1]


def test_init_demo_queues_mail_the_worker_files_as_tickets(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    result = run_xgate("init", inst, "--demo")
    assert result.returncode == 0, result.stderr
    assert f"queued 4 demo messages to {DEMO_MAILBOX}" in result.stdout
    services = installation_services(installation_settings(inst / "xgate.toml"))
    try:
        with session_scope(services.sessions) as session:
            mailbox = find_mailbox(session, DEMO_MAILBOX)
            assert mailbox is not None
            demo_user, colleague = find_user(session, "demo"), find_user(session, "sb")
            assert demo_user is not None and colleague is not None
            # Both see the mailbox in the web app (rights ask for membership).
            assert role_in(session, demo_user.id, mailbox.id) is MemberRole.LEAD
            assert role_in(session, colleague.id, mailbox.id) is MemberRole.AGENT
            # Only queued: the worker makes the tickets, nothing wrote one.
            assert not session.scalars(select(Ticket)).all()
            queued = session.scalars(select(Message).where(
                Message.direction == Direction.INBOUND).order_by(Message.id)).all()
            assert [m.state for m in queued] == [MessageState.RECEIVED] * 4
            follow_up_due = queued[-1].next_attempt_at
            assert follow_up_due > queued[0].next_attempt_at
        # The worker takes what is due now (three mails and the receipts their new tickets
        # send); the follow-up waits for the mail it answers, then joins its ticket.
        assert drain(services) == 6
        with session_scope(services.sessions) as session:
            assert len(session.scalars(select(Ticket)).all()) == 3
        later = replace(services, clock=lambda: follow_up_due + timedelta(seconds=1))
        assert drain(later) == 1
        with session_scope(services.sessions) as session:
            states = {m.mail_from: m.state for m in session.scalars(select(Message).where(
                Message.direction == Direction.INBOUND))}
            assert set(states.values()) == {MessageState.DELIVERED}, states
            tickets = {row.requester: row for row in list_tickets(
                session, services.master_key, mailbox.id).rows}
            assert set(tickets) == set(SENDERS)
            assert tickets[CHILDMINDER].subject == SUBJECT_PLACEMENT
            assert tickets[PARENTS].subject == SUBJECT_HTML
            # The childminder's follow-up joined her ticket: two mails in, one ticket.
            mails_in = {t: n for t, n in session.execute(
                select(Article.ticket_id, func.count()).where(
                    Article.kind == ArticleKind.INBOUND.value).group_by(Article.ticket_id))}
            assert mails_in == {tickets[CHILDMINDER].id: 2, tickets[COUNSELLING].id: 1,
                                tickets[PARENTS].id: 1}
            # The counselling service's report came encrypted and signed by its approved key.
            protection = first_protection(session, [tickets[COUNSELLING].id])
            assert protection[tickets[COUNSELLING].id] == Protection(
                True, "openpgp", "valid", COUNSELLING)
            assert tickets[COUNSELLING].subject == SUBJECT_REPORT
        # Filed decrypted (sealed in the mailbox): the report and its attachment readable.
        copies = filed_copies(services, DEMO_MAILBOX)
        assert len(copies) == 4
        [report] = [c for c in copies if b"Stellungnahme_Familie_M.txt" in c]
        assert b"BEGIN PGP MESSAGE" not in report
        assert any(b"text/html" in c for c in copies)
    finally:
        dispose(services)
    again = run_xgate("init", inst, "--demo")
    assert again.returncode == 0, again.stderr
    assert "kept existing demo mail" in again.stdout
    services = installation_services(installation_settings(inst / "xgate.toml"))
    try:
        assert drain(services) == 0
        with session_scope(services.sessions) as session:
            assert len(session.scalars(select(Ticket)).all()) == 3
            assert session.scalar(select(func.count()).select_from(Message).where(
                Message.direction == Direction.INBOUND)) == 4
    finally:
        dispose(services)


def test_db_upgrade_creates_a_missing_database(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    (tmp_path / "inst" / "xgate.db").unlink()
    missing = run_xgate("-c", config, "queue", "list")
    assert missing.returncode == 1
    assert missing.stderr.startswith("xgate: error: database not found")
    assert len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "inst" / "xgate.db").exists(), "must not create an empty database"
    upgraded = run_xgate("-c", config, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from empty" in upgraded.stdout
    assert "up to date" in run_xgate("-c", config, "db", "upgrade").stdout


def test_unmigrated_database_is_reported(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = run_xgate("-c", config, "audit", "verify",
                       env={"XGATE_DATABASE__URL": f"sqlite:///{empty}"})
    assert result.returncode == 1
    assert "no xgate schema" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    url = "postgresql+psycopg://xgate@127.0.0.1:1/nothing?connect_timeout=2"
    result = run_xgate("-c", config, "queue", "list", env={"XGATE_DATABASE__URL": url})
    assert result.returncode == 1
    assert result.stderr.startswith("xgate: error: database unavailable")
    assert len(result.stderr.splitlines()) == 1


def test_mailbox_add_and_list(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    added = run_xgate("-c", config, "mailbox", "add", "ASD@Jugendamt.example",
                      "--name", "Allgemeiner Sozialer Dienst", "--sensitive")
    assert added.returncode == 0, added.stderr
    listing = run_xgate("-c", config, "mailbox", "list").stdout
    assert "asd@jugendamt.example" in listing and "[sensitive]" in listing
    again = run_xgate("-c", config, "mailbox", "add", "asd@jugendamt.example", "--name", "x")
    assert again.returncode == 1
    assert again.stderr.strip() == "xgate: error: mailbox asd@jugendamt.example exists already"
    bad = run_xgate("-c", config, "mailbox", "add", "not-an-address", "--name", "x")
    assert bad.returncode == 1 and "not a valid mailbox address" in bad.stderr


def test_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    password = "correct horse battery staple"
    added = run_xgate("-c", config, "user", "add", "m.mueller", "--password-stdin",
                      stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    assert password not in added.stdout + added.stderr
    services = installation_services(installation_settings(config))
    try:
        with session_scope(services.sessions) as session:
            assert verify_password(session, "m.mueller", password) is not None
    finally:
        dispose(services)
    short = run_xgate("-c", config, "user", "add", "kurz", "--password-stdin", stdin="abc\n")
    assert short.returncode == 1 and "at least" in short.stderr


def test_user_sender_addresses_from_the_cli(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst")
    added = run_xgate("-c", config, "user", "add", "m.mueller", "--password-stdin",
                      "--address", "M.Mueller@jugendamt.example", stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    assert "may submit as: m.mueller@jugendamt.example" in added.stdout
    more = run_xgate("-c", config, "user", "address", "m.mueller", "asd@jugendamt.example")
    assert more.returncode == 0, more.stderr
    bad = run_xgate("-c", config, "user", "address", "m.mueller", "not an address")
    assert bad.returncode == 1 and "not a valid sender address" in bad.stderr
    unknown = run_xgate("-c", config, "user", "address", "niemand", "x@jugendamt.example")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    services = installation_services(installation_settings(config))
    try:
        with session_scope(services.sessions) as session:
            assert sender_addresses(session, "m.mueller") == {
                "m.mueller@jugendamt.example", "asd@jugendamt.example"}
    finally:
        dispose(services)


@pytest.mark.parametrize("argv", [
    ["--help"], ["init", "--help"], ["db", "--help"], ["serve", "--help"],
    ["queue", "retry", "--help"], ["audit", "verify", "--help"], ["mailbox", "add", "--help"],
    ["user", "add", "--help"], ["user", "address", "--help"],
])
def test_every_command_has_help(argv: list[str]) -> None:
    result = run_xgate(*argv)
    assert result.returncode == 0
    assert "usage: xgate" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_xgate("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_init_demo_switches_the_citizen_portal_on_for_the_demo_mailbox(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    result = run_xgate("init", inst, "--demo", "--portal-port", "18026")
    assert result.returncode == 0, result.stderr
    assert "the citizen portal is on, on port 18026" in result.stdout
    settings = installation_settings(inst / "xgate.toml")
    portal = settings.portal
    assert (portal.enabled, portal.host, portal.port, portal.public_url) == (
        True, "127.0.0.1", 18026, "http://127.0.0.1:18026")
    assert [(t.name, t.mailbox) for t in portal.topics] == [
        ("Kindertagespflege: Platz anfragen", DEMO_MAILBOX),
        ("Kindertagespflege: Unterlagen nachreichen", DEMO_MAILBOX)]
    # Every topic files into a shared mailbox that exists ('xgate serve' checks it too).
    services = installation_services(settings)
    try:
        with session_scope(services.sessions) as session:
            assert all(find_mailbox(session, t.mailbox) is not None for t in portal.topics)
    finally:
        dispose(services)
    # Without --demo the portal stays off; a port out of range is one line.
    assert not installation_settings(init_installation(tmp_path / "plain")).portal.enabled
    bad = run_xgate("init", tmp_path / "bad", "--demo", "--portal-port", "0")
    assert bad.returncode != 0
    assert bad.stderr.strip() == "xgate: error: --portal-port must be 1 to 65535, not 0"
