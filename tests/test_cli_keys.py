"""``xgate keys``, ``xgate partner`` and ``xgate user admin`` end to end through
``gateway.cli.main``, on SQLite and PostgreSQL: output, exit status, one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from crypto.at_rest import MasterKey
from gateway.audit.view import opened
from gateway.db import make_engine, make_session_factory, read_scope
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import own_keys_for
from gateway.models import AuditEntry, StaffUser
from gateway.settings import load_settings
from tests.support.cli import Cli, run_xgate
from tests.test_keydir_certs import der, fingerprint, key_pem, make_cert, pem, rsa_key, utcnow


def test_partner_lifecycle(cli: Cli) -> None:
    _, out, _ = cli("partner", "add", "Jugendamt B", "--domain", "Jugendamt-B.example",
                    "--address", "beratung@stelle.example", "--outbound", "require-smime",
                    "--gcm", "--require-signature", "--actor", "alice")
    assert out.strip() == ("partner Jugendamt B added: jugendamt-b.example, "
                           "beratung@stelle.example; outbound require-smime; invalid "
                           "signature: quarantine")
    _, out, _ = cli("partner", "list")
    assert out.splitlines()[0].split() == ["NAME", "OUTBOUND", "INBOUND", "INVALID",
                                           "SIGNATURE", "DOMAINS", "AND", "ADDRESSES"]
    assert "require-smime (gcm)" in out and "signature" in out and "quarantine" in out
    _, out, _ = cli("partner", "set", "Jugendamt B", "--no-gcm", "--require-encryption",
                    "--add-domain", "ja-b.example", "--remove", "beratung@stelle.example",
                    "--note", "per Telefon bestätigt", "--invalid-signature", "warn")
    assert "S/MIME GCM:    no" in out and "encryption + signature" in out
    assert "bad signature: warn (delivered with a subject prefix and a warning" in out
    _, out, _ = cli("partner", "show", "Jugendamt B", "--json")
    view = json.loads(out)
    assert view["patterns"] == ["ja-b.example", "jugendamt-b.example"]
    assert view["note"] == "per Telefon bestätigt" and view["created_by"] == "alice"
    assert view["inbound_invalid_signature"] == "warn"
    _, out, _ = cli("partner", "list")
    assert out.splitlines()[1].split()[:4] == ["Jugendamt", "B", "require-smime",
                                               "encryption"]
    assert " warn " in out.splitlines()[1]
    _, out, _ = cli("partner", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["Jugendamt B"]
    _, out, _ = cli("partner", "remove", "Jugendamt B")
    assert "removed" in out
    _, out, _ = cli("partner", "list")
    assert out.strip() == "no partners"
    actions = [a for _, a in cli.audit_actions()]
    assert actions == ["partner-added", "partner-changed", "partner-address-added",
                       "partner-address-removed", "partner-removed"]
    [added] = [d for d in _audit_details(cli) if "outbound_policy" in d]
    assert added["inbound_invalid_signature"] == "quarantine"
    [changed] = [d for d in _audit_details(cli) if "changes" in d]
    assert changed["changes"]["inbound_invalid_signature"] == ["quarantine", "warn"]


def _audit_details(cli: Cli) -> list[dict[str, Any]]:
    engine = make_engine(load_settings(cli.config))
    try:
        with read_scope(make_session_factory(engine)) as session:
            return [e.details for e in opened(session, session.scalars(
                select(AuditEntry).order_by(AuditEntry.seq)))]
    finally:
        engine.dispose()


def test_partner_errors_are_one_line(cli: Cli) -> None:
    assert cli.fails("partner", "add", "Kita", "--domain", "kita.example",
                     "--outbound", "plaintext") == (
        "partner 'Kita': outbound policy plaintext is only allowed for a partner marked "
        "non-sensitive")
    assert cli.fails("partner", "add", "Kita").startswith("give at least one domain or address")
    cli("partner", "add", "Kita", "--domain", "kita.example", "--outbound", "plaintext",
        "--non-sensitive")
    assert cli.fails("partner", "add", "Kita2", "--domain", "kita.example") == (
        "kita.example belongs to partner 'Kita' already")
    assert cli.fails("partner", "show", "Nobody") == "no partner 'Nobody'"
    assert cli.fails("partner", "set", "Kita", "--remove", "x.example") == (
        "partner 'Kita' has no address or domain 'x.example'")
    assert cli.fails("partner", "add", "X", "--domain", "not a domain") == (
        "not a valid domain or e-mail address: 'not a domain'")


def test_import_list_show_decide(cli: Cli) -> None:
    cli("partner", "add", "Stelle", "--domain", "stelle.example")
    cert = make_cert("fach@stelle.example")
    weak = make_cert("alt@stelle.example", key=rsa_key(2048))
    path = cli.file("partner.pem", pem(cert, weak))

    _, out, _ = cli("keys", "import", path, "--actor", "alice")
    assert out.count("added; smime pending, partner Stelle") == 2
    assert "warning: RSA key of 2048 bits" in out
    _, out, _ = cli("keys", "list", "--status", "pending")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "KIND", "STATUS"]
    assert len(lines) == 3 and "pending (!)" in lines[2]
    _, out, _ = cli("keys", "list", "--json", "--partner", "Stelle")
    keys = json.loads(out)
    first = keys[0]["id"]
    assert [k["fingerprint"] for k in keys] == [fingerprint(cert), fingerprint(weak)]
    _, out, _ = cli("keys", "show", str(first))
    assert f"source detail: {path}" in out and "added by:      alice" in out
    assert "status:        pending" in out
    _, out, _ = cli("keys", "show", str(first), "--pem")
    assert "-----BEGIN CERTIFICATE-----" in out
    _, out, _ = cli("keys", "approve", str(first), "--actor", "chef")
    assert out.strip().endswith("is approved now")
    _, out, _ = cli("keys", "show", str(first), "--json")
    view = json.loads(out)
    assert (view["status"], view["decided_by"]) == ("approved", "chef")
    assert view["data"].startswith("-----BEGIN CERTIFICATE-----")
    cli("keys", "reject", str(keys[1]["id"]))
    assert cli.fails("keys", "reject", str(first)) == (
        f"key {first} is approved; only a pending key can be rejected (revoke an approved one)")
    cli("keys", "revoke", str(first))
    assert cli.fails("keys", "approve", str(first)) == f"key {first} is revoked and stays so"
    assert cli.fails("keys", "show", "999") == "no partner key 999"
    # The same file again: nothing new.
    _, out, _ = cli("keys", "import", path)
    assert out.count("known already, unchanged") == 2
    actions = cli.audit_actions()
    assert ("alice", "key-added") in actions and ("chef", "key-approved") in actions
    assert [a for _, a in actions][-2:] == ["key-rejected", "key-revoked"]


def test_import_errors_are_one_line(cli: Cli) -> None:
    assert cli.fails("keys", "import", cli.file("junk.txt", b"just text")) == (
        "not a certificate or OpenPGP public key (expected a PEM or DER certificate, a "
        "PKCS#7 bundle, or an OpenPGP public key)")
    assert cli.fails("keys", "import", cli.file("k.pem", pem(make_cert("a@b.example"))
                                                + key_pem(rsa_key()))) == (
        "the file contains a private key; import only the partner's public certificate or "
        "public key")
    assert "below the minimum of 2048" in cli.fails(
        "keys", "import", cli.file("weak.pem", pem(make_cert("a@b.example",
                                                             key=rsa_key(1024)))))
    assert cli.fails("keys", "import", str(cli.tmp / "missing.pem")).startswith(
        "No such file or directory")
    assert cli.fails("keys", "import", cli.file("a.der", der(make_cert("a@b.example"))),
                     "--partner", "Nobody") == "no partner 'Nobody'"
    assert cli.audit_actions() == []


def test_expiring(cli: Cli) -> None:
    _, out, _ = cli("keys", "expiring")
    assert out.strip() == "no keys expire in the next 30 days"
    now = utcnow()
    soon = make_cert("a@b.example", not_after=now + timedelta(days=20))
    later = make_cert("c@b.example", key=rsa_key(3072, "b"), not_after=now + timedelta(days=50))
    cli("keys", "import", cli.file("k.pem", pem(soon, later)), "--approve")
    _, out, _ = cli("keys", "expiring")
    assert len(out.splitlines()) == 2 and "a@b.example" in out and "c@b.example" not in out
    _, out, _ = cli("keys", "expiring", "--days", "60", "--json")
    assert [k["addresses"] for k in json.loads(out)] == [["a@b.example"], ["c@b.example"]]
    with pytest.raises(SystemExit) as exited:
        cli("keys", "expiring", "--days", "0", ok=False)
    assert exited.value.code == 2
    assert "must be at least 1" in cli.capsys.readouterr().err


def test_own_keys(cli: Cli) -> None:
    box = "asd@jugendamt.example"
    key = rsa_key(3072, "own-cli")
    cert = make_cert(box, key=key)
    p12 = pkcs12.serialize_key_and_certificates(
        b"asd", key, cert, None, serialization.BestAvailableEncryption(b"geheim"))
    password = cli.file("pw.txt", b"geheim\n")
    _, out, _ = cli("keys", "own", "import", "--address", box, "--pkcs12",
                    cli.file("asd.p12", p12), "--password-file", password)
    assert out.startswith(f"own key 1: imported smime rsa3072 key for {box}")
    assert cli.fails("keys", "own", "import", "--address", box, "--pkcs12",
                     cli.file("asd2.p12", p12)) == (
        "cannot read the PKCS#12 file (no password given, or not PKCS#12)")
    weak = rsa_key(2048, "own-weak")
    assert "at least 3072 bits" in cli.fails(
        "keys", "own", "import", "--address", box,
        "--cert", cli.file("c.pem", pem(make_cert(box, key=weak))),
        "--key", cli.file("k.pem", key_pem(weak)))
    assert cli.fails("keys", "own", "import", "--address", box, "--cert",
                     cli.file("c2.pem", pem(cert))) == (
        "--cert needs --key (the certificate's private key, PEM)")
    other = rsa_key(3072, "own-cli-2")
    _, out, _ = cli("keys", "own", "import", "--address", "@jugendamt.example",
                    "--cert", cli.file("c3.pem", pem(make_cert("post@jugendamt.example",
                                                               key=other))),
                    "--key", cli.file("k3.pem", key_pem(other)))
    _, out, _ = cli("keys", "own", "generate", "--address", box)
    assert "generated cv25519 OpenPGP key for asd@jugendamt.example" in out
    _, out, _ = cli("keys", "own", "list")
    assert len(out.splitlines()) == 4 and out.count("in use") == 3
    _, out, _ = cli("keys", "own", "retire", "1")
    assert "retired" in out
    assert cli.fails("keys", "own", "retire", "1") == "own key 1 is retired already"
    _, out, _ = cli("keys", "own", "list", "--json", "--address", box)
    views = json.loads(out)
    assert [(v["kind"], v["retired"]) for v in views] == [("smime", True), ("openpgp", False)]
    assert "private" not in out

    settings = load_settings(cli.config)
    engine = make_engine(settings)
    master = MasterKey.load(settings.storage.master_key_file)
    try:
        with read_scope(make_session_factory(engine)) as session:
            [domain_key] = own_keys_for(session, master, box, KeyKind.SMIME)
            assert domain_key.address == "@jugendamt.example"
    finally:
        engine.dispose()
    assert [a for _, a in cli.audit_actions()] == ["own-key-added", "own-key-added",
                                                   "own-key-added", "own-key-retired"]


def test_user_admin_flag(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin("ein langes passwort\n"))
    _, out, _ = cli("user", "add", "chef", "--password-stdin", "--admin")
    assert "created (admin)" in out
    monkeypatch.setattr("sys.stdin", _Stdin("ein langes passwort\n"))
    cli("user", "add", "sachb", "--password-stdin")
    _, out, _ = cli("user", "admin", "sachb")
    assert out.strip() == "staff user sachb is an admin now"
    _, out, _ = cli("user", "admin", "sachb")
    assert out.strip() == "staff user sachb is an admin already"
    _, out, _ = cli("user", "admin", "chef", "--revoke")
    assert out.strip() == "staff user chef is no admin now"
    assert cli.fails("user", "admin", "nobody") == "no staff user nobody"
    settings = load_settings(cli.config)
    engine = make_engine(settings)
    try:
        with read_scope(make_session_factory(engine)) as session:
            admins = {name: admin for name, admin in session.execute(
                select(StaffUser.username, StaffUser.admin))}
    finally:
        engine.dispose()
    assert admins == {"chef": False, "sachb": True}
    # Creating an admin is one entry naming the right (test_cli_user has the details).
    assert [a for _, a in cli.audit_actions()] == ["user-added", "user-added",
                                                   "admin-granted", "admin-revoked"]


class _Stdin:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""


def test_real_command_knows_the_commands() -> None:
    # The console script, as operators run it.
    for command in ("keys", "partner"):
        result = run_xgate(command, "--help")
        assert result.returncode == 0, result.stderr
    assert "expiring" in run_xgate("keys", "--help").stdout
