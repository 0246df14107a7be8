"""``xgate user`` and ``xgate mailbox`` as an operator runs them, on SQLite and PostgreSQL:
listing accounts without their hashes, disabling and enabling them and changing passwords
(felt at once by SMTP AUTH, the JSON API and the CLI's ``--admin``), and an audit entry for
every change of users, sender addresses and mailboxes."""

from __future__ import annotations

import io
import json
import smtplib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from admin_ui.app import create_app
from gateway.audit.view import opened as opened_audit
from gateway.db import make_engine, make_session_factory, read_scope
from gateway.models import AuditEntry
from gateway.settings import Settings, load_settings
from tests.support.cli import Cli, run_xgate
from tests.support.smtp_client import client_context
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    start_edge_fixture,
    tls_files_fixture,
)
from tests.support.staff_web import add_tokens, bearer

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "ein sehr langes passwort"
NEW_PASSWORD = "ein anderes langes passwort"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> str:
    # gateway.cli.common.operator_name: the person behind sudo comes first.
    monkeypatch.setenv("SUDO_USER", "jana")
    return "operator:jana"


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    # A StringIO is no terminal, like a pipe.
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _add(cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, *options: str) -> str:
    _stdin(monkeypatch, PASSWORD + "\n")
    return cli("user", "add", name, "--password-stdin", *options)[1]


def _entries(cli: Cli) -> list[tuple[str, str, dict[str, Any]]]:
    cli.audit_actions()  # asserts that the chain verifies
    engine = make_engine(load_settings(cli.config))
    try:
        with read_scope(make_session_factory(engine)) as session:
            return [(e.actor, e.action, e.details) for e in opened_audit(session, session.scalars(
                select(AuditEntry).order_by(AuditEntry.seq)))]
    finally:
        engine.dispose()


# --- list -------------------------------------------------------------------------------------


def test_user_list_shows_accounts_never_hashes(cli: Cli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("user", "list")[1].strip() == "no staff users"
    assert json.loads(cli("user", "list", "--json")[1]) == []
    _add(cli, monkeypatch, "sachb", "--address", "SB@Jugendamt.example",
         "--address", "asd@jugendamt.example")
    _add(cli, monkeypatch, "chef", "--admin")
    # Not the last active admin: that one cannot be disabled (test_the_last_admin_stays).
    _add(cli, monkeypatch, "vertretung", "--admin")
    cli("user", "disable", "chef")

    _, out, _ = cli("user", "list")
    lines = out.splitlines()
    assert [line.split()[:3] for line in lines] == [["chef", "admin", "DISABLED"],
                                                    ["sachb", "staff", "active"],
                                                    ["vertretung", "admin", "active"]]
    assert lines[0].endswith("  -")
    assert lines[1].endswith("asd@jugendamt.example, sb@jugendamt.example")

    _, out, _ = cli("user", "list", "--json")
    assert "argon2" not in out and PASSWORD not in out
    users = json.loads(out)
    assert [set(u) for u in users] == [
        {"username", "admin", "disabled", "addresses", "created_at"}] * 3
    chef, sachb, _ = users
    assert (chef["username"], chef["admin"], chef["disabled"], chef["addresses"]) == (
        "chef", True, True, [])
    assert (sachb["username"], sachb["admin"], sachb["disabled"], sachb["addresses"]) == (
        "sachb", False, False, ["asd@jugendamt.example", "sb@jugendamt.example"])
    assert sachb["created_at"].endswith("+00:00")


# --- disable, enable, password: felt by every way in -----------------------------------------


def _smtp_login(edge: Edge, user: str, password: str) -> int:
    with smtplib.SMTP(*edge.submission) as client:
        client.starttls(context=client_context(edge.cert))
        client.ehlo()
        try:
            return client.login(user, password)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def _cli_admin_check(cli: Cli, monkeypatch: pytest.MonkeyPatch, password: str) -> str:
    # The password check comes before the queue id is looked up: an unknown id shows that
    # authentication passed.
    _stdin(monkeypatch, password + "\n")
    cli.capsys.readouterr()  # the SMTP edge's log lines, not this command's
    return cli.fails("quarantine", "delete", "NOSUCHID", "--admin", "chef", "--reason", "x",
                     "--password-stdin")


def test_disable_enable_and_new_password_reach_every_login(
        cli: Cli, monkeypatch: pytest.MonkeyPatch, edge: Edge, settings: Settings) -> None:
    _add(cli, monkeypatch, "chef", "--admin", "--address", "chef@jugendamt.example")
    # Not the last active admin: that one cannot be disabled (test_the_last_admin_stays).
    _add(cli, monkeypatch, "vertretung", "--admin")
    passed = "no message with queue id 'NOSUCHID'"
    refused = "authentication as chef failed"
    add_tokens(settings, "chef")
    with TestClient(create_app(settings)) as api:
        # The API takes tokens, not passwords: a token follows its user's disabled state,
        # not their password.
        def api_status() -> int:
            status: int = api.get("/api/v1/keys", headers=bearer("chef")).status_code
            return status

        assert (_smtp_login(edge, "chef", PASSWORD), api_status(),
                _cli_admin_check(cli, monkeypatch, PASSWORD)) == (235, 200, passed)

        assert cli("user", "disable", "chef")[1].strip() == "staff user chef disabled"
        assert cli("user", "disable", "chef")[1].strip() == "staff user chef is disabled already"
        assert (_smtp_login(edge, "chef", PASSWORD), api_status(),
                _cli_admin_check(cli, monkeypatch, PASSWORD)) == (535, 401, refused)

        assert cli("user", "enable", "chef")[1].strip() == "staff user chef enabled"
        assert (_smtp_login(edge, "chef", PASSWORD), api_status(),
                _cli_admin_check(cli, monkeypatch, PASSWORD)) == (235, 200, passed)

        _stdin(monkeypatch, NEW_PASSWORD + "\n")
        _, out, _ = cli("user", "password", "chef", "--password-stdin")
        assert out.strip() == "staff user chef has a new password"
        assert NEW_PASSWORD not in out
        assert (_smtp_login(edge, "chef", PASSWORD),
                _cli_admin_check(cli, monkeypatch, PASSWORD)) == (535, refused)
        assert (_smtp_login(edge, "chef", NEW_PASSWORD), api_status(),
                _cli_admin_check(cli, monkeypatch, NEW_PASSWORD)) == (235, 200, passed)


def test_user_command_refusals_are_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.fails("user", "disable", "niemand") == "no staff user niemand"
    assert cli.fails("user", "enable", "niemand") == "no staff user niemand"
    _stdin(monkeypatch, NEW_PASSWORD + "\n")
    assert cli.fails("user", "password", "niemand", "--password-stdin") == (
        "no staff user niemand")
    _add(cli, monkeypatch, "sachb")
    _stdin(monkeypatch, "kurz\n")
    assert cli.fails("user", "password", "sachb", "--password-stdin") == (
        "password must have at least 12 characters")
    _stdin(monkeypatch, "")
    assert cli.fails("user", "password", "sachb", "--password-stdin") == (
        "the password must not be empty")
    # Not a terminal, and no --password-stdin: nobody to ask.
    _stdin(monkeypatch, NEW_PASSWORD + "\n")
    assert cli.fails("user", "password", "sachb") == (
        "no terminal to ask for the password; pipe it with --password-stdin")
    assert cli.fails("mailbox", "set", "x@jugendamt.example") == (
        "nothing to change: give --name, --sensitive, --not-sensitive, --receipt, "
        "--no-receipt, --receipt-text, --default-receipt-text or --signature")
    assert cli.fails("mailbox", "set", "x@jugendamt.example", "--sensitive") == (
        "no mailbox x@jugendamt.example")
    # Refused changes leave no trace.
    assert [a for _, a, _ in _entries(cli)] == ["user-added"]


def test_the_last_admin_stays(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last active admin can neither be disabled nor lose the right, by any way (the
    rule is gateway.staff.actions'); with a second admin both work."""
    _add(cli, monkeypatch, "chef", "--admin")
    last = "staff user chef is the last active admin; make another user an admin first"
    assert cli.fails("user", "disable", "chef") == last
    assert cli.fails("user", "admin", "chef", "--revoke") == last
    assert cli.fails("user", "role", "chef", "admin", "--revoke") == last
    _add(cli, monkeypatch, "vertretung", "--admin")
    cli("user", "disable", "vertretung")
    # A disabled admin is no admin who can act: chef is still the last active one.
    assert cli.fails("user", "disable", "chef") == last
    cli("user", "enable", "vertretung")
    cli("user", "admin", "chef", "--revoke")
    assert cli.fails("user", "disable", "vertretung") == (
        "staff user vertretung is the last active admin; make another user an admin first")
    assert [a for _, a, _ in _entries(cli)] == [
        "user-added", "user-added", "user-disabled", "user-enabled", "admin-revoked"]


@pytest.mark.parametrize("command", ["add", "password"])
def test_piped_password_without_password_stdin_says_what_to_do(cli: Cli, command: str) -> None:
    # The real console script with its standard input a pipe, as in a script or over ssh
    # without a terminal; it used to end in "internal error: EOFError".
    if command == "password":
        assert run_xgate("-c", cli.config, "user", "add", "sachb", "--password-stdin",
                         stdin=PASSWORD + "\n").returncode == 0
    result = run_xgate("-c", cli.config, "user", command, "sachb" if command == "password"
                       else "neu", stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert result.stderr == ("xgate: error: no terminal to ask for the password; pipe it "
                             "with --password-stdin\n")
    assert result.stdout == ""


# --- the audit trail --------------------------------------------------------------------------


def test_every_user_change_is_audited(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                      operator: str) -> None:
    _add(cli, monkeypatch, "sachb", "--address", "SB@Jugendamt.example")
    _add(cli, monkeypatch, "chef", "--admin")
    assert cli("user", "address", "sachb", "asd@jugendamt.example")[1].strip() == (
        "staff user sachb may now submit as asd@jugendamt.example")
    assert cli("user", "address", "sachb", "ASD@jugendamt.example")[1].strip() == (
        "staff user sachb may submit as asd@jugendamt.example already")
    assert cli("user", "address", "sachb", "sb@jugendamt.example", "--remove")[1].strip() == (
        "staff user sachb may no longer submit as sb@jugendamt.example")
    assert cli("user", "address", "sachb", "sb@jugendamt.example", "--remove")[1].strip() == (
        "staff user sachb could not submit as sb@jugendamt.example anyway")
    cli("user", "admin", "sachb")
    cli("user", "admin", "sachb")  # no change, no entry
    # sachb, not chef: the last active admin cannot be disabled (test_the_last_admin_stays).
    cli("user", "admin", "sachb", "--revoke")
    cli("user", "disable", "sachb")
    cli("user", "disable", "sachb")
    cli("user", "enable", "sachb")
    _stdin(monkeypatch, NEW_PASSWORD + "\n")
    cli("user", "password", "sachb", "--password-stdin")

    entries = _entries(cli)
    assert {actor for actor, _, _ in entries} == {operator}
    assert [(action, detail) for _, action, detail in entries] == [
        ("user-added", {"user": "sachb", "admin": False,
                        "addresses": ["sb@jugendamt.example"]}),
        ("user-added", {"user": "chef", "admin": True, "addresses": []}),
        ("user-address-added", {"user": "sachb", "address": "asd@jugendamt.example"}),
        ("user-address-removed", {"user": "sachb", "address": "sb@jugendamt.example"}),
        ("admin-granted", {"user": "sachb"}),
        ("admin-revoked", {"user": "sachb"}),
        ("user-disabled", {"user": "sachb"}),
        ("user-enabled", {"user": "sachb"}),
        ("user-password-changed", {"user": "sachb"}),
    ]
    trail = json.dumps(entries)
    assert PASSWORD not in trail and NEW_PASSWORD not in trail and "argon2" not in trail
    _, out, _ = cli("audit", "verify")
    assert out.strip() == "audit chain intact: 9 entries"


def test_every_mailbox_change_is_audited(cli: Cli, operator: str) -> None:
    cli("mailbox", "add", "ASD@Jugendamt.example", "--name", "Allgemeiner Sozialer Dienst")
    cli("mailbox", "add", "eb@jugendamt.example", "--name", "Erziehungsberatung",
        "--sensitive")
    _, out, _ = cli("mailbox", "set", "asd@jugendamt.example", "--sensitive")
    assert out.strip() == "mailbox asd@jugendamt.example changed: sensitive False -> True"
    _, out, _ = cli("mailbox", "set", "asd@jugendamt.example", "--sensitive")
    assert out.strip() == "mailbox asd@jugendamt.example unchanged"
    _, out, _ = cli("mailbox", "set", "EB@jugendamt.example", "--not-sensitive",
                    "--name", "EB")
    assert out.strip() == ("mailbox eb@jugendamt.example changed: name 'Erziehungsberatung' "
                           "-> 'EB', sensitive True -> False")
    listing = cli("mailbox", "list")[1].splitlines()
    assert listing[0].endswith("Allgemeiner Sozialer Dienst  [sensitive]")
    assert listing[1].endswith("EB")

    entries = _entries(cli)
    assert {actor for actor, _, _ in entries} == {operator}
    assert [(action, detail) for _, action, detail in entries] == [
        ("mailbox-added", {"mailbox": "asd@jugendamt.example",
                           "name": "Allgemeiner Sozialer Dienst", "sensitive": False}),
        ("mailbox-added", {"mailbox": "eb@jugendamt.example", "name": "Erziehungsberatung",
                           "sensitive": True}),
        ("mailbox-changed", {"mailbox": "asd@jugendamt.example",
                             "sensitive": {"from": False, "to": True}}),
        ("mailbox-changed", {"mailbox": "eb@jugendamt.example",
                             "name": {"from": "Erziehungsberatung", "to": "EB"},
                             "sensitive": {"from": True, "to": False}}),
    ]
    assert cli("audit", "verify")[1].strip() == "audit chain intact: 4 entries"
