"""``xgate policy explain`` (the dry run) and ``xgate keys lookup`` (WKD over real HTTPS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto.wkd import wkd_urls
from tests.support.cli import Cli
from tests.support.gpg_partner import GpgPartner
from tests.support.pki import NamedPki, make_named_pki
from tests.support.smime_pki import make_ca, make_person
from tests.support.wkd_server import WkdServer

STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"


def test_explain_outbound_hold_then_encrypt(cli: Cli, tmp_path: Path) -> None:
    with cli.config.open("a") as fh:
        fh.write('[delivery]\nroutes = [{domain = "*", host = "relay.invalid"}]\n')
    cli("partner", "add", "Jugendamt B", "--domain", "jugendamt-b.example", "--outbound",
        "require-smime")
    _, out, _ = cli("policy", "explain", "--from", STAFF, "--to", PARTNER)
    assert out.splitlines()[0] == f"{STAFF} -> {PARTNER}: outbound, verdict: hold"
    assert "partner 'Jugendamt B' (matched jugendamt-b.example) requires require-smime" in out
    assert f"needs an approved, valid S/MIME certificate for {PARTNER}" in out

    ca = make_ca(tmp_path, "ca")
    partner = make_person(tmp_path, "partner", PARTNER, ca)
    cli("keys", "import", str(partner.cert_pem), "--approve")
    _, out, _ = cli("policy", "explain", "--from", STAFF, "--to", PARTNER, "--json")
    result = json.loads(out)
    assert result["verdict"] == "encrypt-smime"
    assert any(f"to certificate {partner.fingerprint[:16]}" in s for s in result["steps"])
    assert any(s.startswith("unsigned: no valid own") for s in result["steps"])


def test_explain_unknown_partner_fails_closed_and_inbound(cli: Cli) -> None:
    with cli.config.open("a") as fh:
        fh.write('[delivery]\nroutes = [{domain = "*", host = "relay.invalid"}]\n')
    _, out, _ = cli("policy", "explain", "--from", STAFF, "--to", "x@elsewhere.example")
    assert "verdict: hold" in out and "default policy for unknown partners is either" in out
    cli("mailbox", "add", "hilfeplan@jugendamt.example", "--name", "Hilfeplanung")
    cli("partner", "add", "Jugendamt B", "--domain", "jugendamt-b.example",
        "--require-encryption")
    _, out, _ = cli("policy", "explain", "--from", PARTNER, "--to",
                    "hilfeplan@jugendamt.example")
    assert "inbound, verdict: deliver" in out
    assert "smime-encrypted mail is quarantined: no own smime key" in out
    assert "unencrypted mail from this partner is quarantined" in out
    assert "a signature that fails (altered content; expired, revoked or untrusted " \
           "certificate; unknown key) is quarantined with the reason\n" in out
    cli("partner", "set", "Jugendamt B", "--invalid-signature", "warn")
    _, out, _ = cli("policy", "explain", "--from", PARTNER, "--to",
                    "hilfeplan@jugendamt.example")
    assert ("is delivered with a warning: the subject gets '[Signatur ungültig]' and a text "
            "part at the top says why (partner setting invalid-signature warn)") in out
    _, out, _ = cli("policy", "explain", "--from", "someone@elsewhere.example", "--to",
                    "hilfeplan@jugendamt.example")
    assert "no partner record" in out and "is quarantined with the reason (default)" in out
    _, out, _ = cli("policy", "explain", "--from", PARTNER, "--to", "nobody@jugendamt.example")
    assert "verdict: refuse" in out


@pytest.fixture(scope="module")
def wkd_pki(tmp_path_factory: pytest.TempPathFactory) -> NamedPki:
    return make_named_pki(tmp_path_factory.mktemp("wkd-cli"), {
        "partner": ["openpgpkey.jugendamt-b.example", "jugendamt-b.example"]})


def test_keys_lookup_imports_from_wkd_with_provenance(cli: Cli, wkd_pki: NamedPki,
                                                      tmp_path: Path) -> None:
    with GpgPartner.create(tmp_path / "gpg") as gpg:
        fpr = gpg.generate(f"Fachdienst <{PARTNER}>", "cv25519")
        other = gpg.generate("Someone <someone@jugendamt-b.example>", "cv25519")
        key = gpg.run("--export", fpr).stdout
        wrong = gpg.run("--export", other).stdout
    advanced, _ = wkd_urls(PARTNER)
    path = advanced.split("jugendamt-b.example", 1)[1].split("?")[0]
    with WkdServer(wkd_pki.certs["partner"], {path: key}) as server:
        resolve = ", ".join(f'"{h}" = "{a}"' for h, a in server.resolve(
            "openpgpkey.jugendamt-b.example", "jugendamt-b.example").items())
        with cli.config.open("a") as fh:
            fh.write(f'wkd_ca_file = "{wkd_pki.ca_file}"\nwkd_resolve = {{ {resolve} }}\n')
        _, out, _ = cli("keys", "lookup", PARTNER)
        assert out.startswith("found at https://openpgpkey.jugendamt-b.example/")
        assert "pending" in out and fpr in out
        _, out, _ = cli("keys", "list", "--json")
        [view] = json.loads(out)
        assert view["source"] == "wkd" and view["source_detail"].startswith("https://")
        # A directory that publishes a key for someone else under this address is refused.
        server.routes[path] = wrong
        assert "name" in cli.fails("keys", "lookup", PARTNER)
        server.routes.clear()
        assert "no key published" in cli.fails("keys", "lookup", PARTNER)
