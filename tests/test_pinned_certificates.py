"""Self-signed partner certificates, pinned by an admin's approval.

Small counselling services make their S/MIME certificate themselves with ``openssl req
-x509`` (which marks it CA:TRUE by default). Such a certificate is imported as pending; once
an admin approves it (having compared its SHA-256 fingerprint by phone) exactly this
certificate is trusted: its signatures are "valid (pinned)", and mail to the service is
encrypted to it. openssl plays the service throughout: it makes the certificates, signs,
and decrypts what the gateway sends.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crypto.smime_verify import REASON_EXPIRED, REASON_NO_CHAIN, verify_smime
from gateway.db import read_scope, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.keys import list_keys, pinned_certificates
from gateway.keydir.material import is_self_signed, parse_partner_material
from gateway.keydir.models import KeyStatus
from gateway.models import Direction, MessageState
from gateway.services import Services, build_services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.support import crypto_setup
from tests.support.cli import Cli
from tests.support.openssl_partner import OpensslPartner, crlf, mail
from tests.support.pipeline import drain, enqueue, filed_copies, load_message
from tests.support.smime_pki import DAY, Party, make_ca, make_person, now, write_party

SERVICE = "info@lotse.example"
MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Beratungsbericht fuer Familie K. Vertraulich.\r\n" * 3)
TIMEOUT = 120


def openssl_self_signed(directory: Path, name: str, email: str, *,
                        end_entity: bool = False) -> Party:
    """What a small service does: ``openssl req -x509`` with its address in the subject
    and the subjectAltName. Without ``end_entity`` openssl's defaults apply (CA:TRUE)."""
    cert_pem, key_pem = directory / f"{name}.pem", directory / f"{name}.key"
    extra = ["-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
             "-addext", "extendedKeyUsage=emailProtection"] if end_entity else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256",
                    "-keyout", str(key_pem), "-out", str(cert_pem), "-days", "365",
                    "-subj", f"/CN={name}/emailAddress={email}",
                    "-addext", f"subjectAltName=email:{email}", *extra],
                   check=True, capture_output=True, timeout=TIMEOUT)
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    key = serialization.load_pem_private_key(key_pem.read_bytes(), None)
    return Party(cert, key, cert_pem, key_pem)


def _issued_by(directory: Path, name: str, issuer: Party, email: str) -> Party:
    """A certificate the pinned one "issued": it says CA:TRUE, so it technically could."""
    assert isinstance(issuer.key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(65537, 3072)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - DAY).not_valid_after(now() + 100 * DAY)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]),
                           critical=False)
            .sign(issuer.key, hashes.SHA256()))
    return write_party(directory, name, cert, key)


def _expired_self_signed(directory: Path, email: str) -> Party:
    key = rsa.generate_private_key(65537, 3072)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Lotse alt")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - 400 * DAY).not_valid_after(now() - DAY)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return write_party(directory, "expired", cert, key)


@dataclass(frozen=True)
class Certs:
    directory: Path
    lotse: Party  # the service's certificate, openssl's defaults (CA:TRUE)
    lotse_ee: Party  # the same made as an end-entity certificate (CA:FALSE)
    imposter: Party  # someone else's self-signed certificate for the same address
    child: Party  # issued by the pinned certificate
    expired: Party
    ca: Party  # the office's CA (its own certificates; the only trust anchor)
    staff: Party


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("pinned")
    lotse = openssl_self_signed(d, "Beratungsstelle Lotse", SERVICE)
    ca = make_ca(d, "office-ca")
    return Certs(
        directory=d, lotse=lotse,
        lotse_ee=openssl_self_signed(d, "Lotse EE", "kontakt@lotse.example", end_entity=True),
        imposter=openssl_self_signed(d, "Beratungsstelle Lotse (falsch)", SERVICE),
        child=_issued_by(d, "child", lotse, SERVICE),
        expired=_expired_self_signed(d, SERVICE),
        ca=ca, staff=make_person(d, "staff", STAFF, ca))


@pytest.fixture
def openssl(certs: Certs) -> OpensslPartner:
    return OpensslPartner(certs.directory)


def sign(openssl: OpensslPartner, signer: Party, *, opaque: bool = False) -> bytes:
    mode = ["-nodetach"] if opaque else []
    return openssl.run("cms", "-sign", "-outform", "SMIME", "-md", "sha256", *mode,
                       "-signer", str(signer.cert_pem), "-inkey", str(signer.key_pem),
                       data=ENTITY)


# --- reading the certificate ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["lotse", "lotse_ee"])
def test_a_self_signed_certificate_is_read_as_a_partner_key(certs: Certs, which: str) -> None:
    party: Party = getattr(certs, which)
    [parsed] = parse_partner_material(party.cert_pem.read_bytes())
    assert parsed.fingerprint == party.fingerprint
    assert parsed.can_encrypt
    assert is_self_signed(party.cert)
    assert not is_self_signed(certs.staff.cert)


def test_a_ca_that_issued_a_certificate_in_the_file_is_still_left_out(certs: Certs) -> None:
    # The service's certificate with one it issued: the issuer is a CA here, not a key.
    parsed = parse_partner_material(certs.lotse.cert_pem.read_bytes()
                                    + certs.child.cert_pem.read_bytes())
    assert [p.fingerprint for p in parsed] == [certs.child.fingerprint]


# --- the verifier ---------------------------------------------------------------------------


def test_verifier_accepts_exactly_the_pinned_certificate(certs: Certs,
                                                         openssl: OpensslPartner) -> None:
    signed = crlf(sign(openssl, certs.lotse))
    result = verify_smime(signed, [certs.ca.cert], pinned=[certs.lotse.cert])
    assert result.valid and result.pinned and result.reason == ""
    unpinned = verify_smime(signed, [certs.ca.cert])
    assert not unpinned.valid and unpinned.reason == REASON_NO_CHAIN
    # Another self-signed certificate for the same address, and one the pinned
    # certificate issued: neither is the pinned certificate.
    for other in (certs.imposter, certs.child):
        result = verify_smime(crlf(sign(openssl, other)), [certs.ca.cert],
                              pinned=[certs.lotse.cert])
        assert (result.valid, result.pinned, result.reason) == (False, False, REASON_NO_CHAIN)


def test_a_pinned_certificate_still_expires(certs: Certs, openssl: OpensslPartner) -> None:
    signed = crlf(sign(openssl, certs.expired))
    result = verify_smime(signed, [], pinned=[certs.expired.cert])
    assert not result.valid and result.reason == REASON_EXPIRED
    assert result.reason_at == certs.expired.cert.not_valid_after_utc


# --- the CLI ------------------------------------------------------------------------------------


def test_import_is_pending_and_approve_shows_the_fingerprint_for_the_phone(
        cli: Cli, certs: Certs) -> None:
    path = str(certs.lotse.cert_pem)
    _, out, _ = cli("keys", "import", path, "--actor", "alice")
    assert "added; smime pending, no partner, info@lotse.example" in out
    assert "self-signed, not pinned until approved" in out
    spoken = ":".join(f"{b:02X}" for b in bytes.fromhex(certs.lotse.fingerprint))
    assert f"SHA-256 fingerprint: {spoken}" in out
    _, out, _ = cli("keys", "list", "--json")
    [view] = json.loads(out)
    key_id = str(view["id"])
    assert (view["self_signed"], view["pinned"]) == (True, False)
    _, out, _ = cli("keys", "show", key_id)
    assert "trust:         self-signed, not pinned until approved" in out

    _, out, _ = cli("keys", "approve", key_id, "--actor", "chef")
    before, approved = out.rstrip().rsplit("\n", 1)
    assert f"SHA-256 fingerprint: {spoken}" in before
    assert "self-signed: no CA vouches for it; approving pins exactly this certificate" in before
    assert "by phone" in before
    assert approved.endswith("is approved now, pinned")
    _, out, _ = cli("keys", "show", key_id)
    assert "trust:         self-signed, pinned (exactly this certificate is trusted)" in out
    _, out, _ = cli("keys", "list")
    assert "approved pinned" in out
    # A CA-issued certificate is shown with its fingerprint too, and is not pinned.
    cli("keys", "import", cli.file("staff.pem", certs.staff.cert_pem.read_bytes()))
    _, out, _ = cli("keys", "list", "--json")
    [_, staff] = json.loads(out)
    assert staff["trust"].startswith("issued by a CA") and not staff["self_signed"]


# --- the pipeline -------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str, certs: Certs) -> Settings:
    return crypto_setup.outbound_settings(tmp_path / "var", database_url, certs.ca.cert_pem)


@pytest.fixture
def gw(services: Services, certs: Certs) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
    crypto_setup.partner(services, "Beratungsstelle Lotse", "lotse.example",
                         outbound_policy="require-smime")
    crypto_setup.own_smime(services, STAFF, certs.staff)
    return services


def _receive(gw: Services, raw: bytes) -> tuple[str, bytes | None]:
    qid = enqueue(gw, [MAILBOX], raw, mail_from=SERVICE)
    drain(gw)
    filed = filed_copies(gw, MAILBOX)
    return qid, (filed[-1] if filed else None)


def _approve_lotse(gw: Services, certs: Certs, *, approve: bool) -> None:
    crypto_setup.partner_key(gw, certs.lotse.cert_pem.read_bytes(), approve=approve)


@pytest.mark.parametrize("opaque", [False, True])
def test_signature_of_the_pinned_certificate_is_valid_pinned(
        gw: Services, certs: Certs, openssl: OpensslPartner, opaque: bool) -> None:
    _approve_lotse(gw, certs, approve=True)
    qid, filed = _receive(gw, mail(sign(openssl, certs.lotse, opaque=opaque),
                                   sender=SERVICE, to=MAILBOX))
    assert load_message(gw, qid).state == MessageState.DELIVERED
    assert filed is not None and b"Beratungsbericht fuer Familie K." in filed
    headers = BytesHeaderParser().parsebytes(filed)
    assert headers["X-Xgate-Signature"] == "valid"
    assert headers["X-Xgate-Signer"] == (
        f"{SERVICE} (S/MIME {certs.lotse.fingerprint}; "
        f"{certs.lotse.cert.subject.rfc4514_string()}; pinned)")
    facts = json.loads(load_message(gw, qid).facts or "{}")
    assert facts["signature"] == "valid" and facts["signer_trust"] == "pinned"


def test_pending_self_signed_certificate_proves_nothing(
        gw: Services, certs: Certs, openssl: OpensslPartner) -> None:
    _approve_lotse(gw, certs, approve=False)
    with read_scope(gw.sessions) as s:
        assert pinned_certificates(s, SERVICE) == []
    qid, filed = _receive(gw, mail(sign(openssl, certs.lotse), sender=SERVICE, to=MAILBOX))
    assert filed is None
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    assert message.reason == "S/MIME signature fails: no chain to a trusted CA"


@pytest.mark.parametrize("who", ["imposter", "child"])
def test_another_certificate_for_the_same_address_is_invalid(
        gw: Services, certs: Certs, openssl: OpensslPartner, who: str) -> None:
    _approve_lotse(gw, certs, approve=True)
    qid, filed = _receive(gw, mail(sign(openssl, getattr(certs, who)), sender=SERVICE,
                                   to=MAILBOX))
    assert filed is None
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    assert message.reason == "S/MIME signature fails: no chain to a trusted CA"
    facts = json.loads(message.facts or "{}")
    assert facts["signature"] == "invalid" and "signer_trust" not in facts
    with read_scope(gw.sessions) as s:
        assert [k.status for k in list_keys(s)] == [KeyStatus.APPROVED]  # nothing harvested


@pytest.fixture
def outbound(gw: Services) -> Iterator[tuple[Services, RecordingTransport]]:
    transport = RecordingTransport()
    services = build_services(gw.settings, transport=transport, clock=gw.clock)
    yield services, transport
    services.sessions.kw["bind"].dispose()


def test_outbound_is_encrypted_to_the_pinned_certificate(
        outbound: tuple[Services, RecordingTransport], certs: Certs,
        openssl: OpensslPartner) -> None:
    services, transport = outbound
    _approve_lotse(services, certs, approve=True)
    qid = enqueue(services, [SERVICE], mail(ENTITY, sender=STAFF, to=SERVICE),
                  mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    assert load_message(services, qid).state == MessageState.DELIVERED
    [(_, _, rcpts, data)] = transport.sent
    assert rcpts == (SERVICE,)
    assert b"Beratungsbericht" not in data
    signed = openssl.decrypt(data, certs.lotse)
    assert b"Beratungsbericht fuer Familie K." in openssl.verify(signed, certs.ca)
    facts = json.loads(load_message(services, qid).facts or "{}")
    assert facts[f"keys:{SERVICE}"] == certs.lotse.fingerprint


def test_outbound_is_held_while_the_certificate_is_pending(
        outbound: tuple[Services, RecordingTransport], certs: Certs) -> None:
    services, transport = outbound
    _approve_lotse(services, certs, approve=False)
    qid = enqueue(services, [SERVICE], mail(ENTITY, sender=STAFF, to=SERVICE),
                  mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    assert load_message(services, qid).state == MessageState.HELD
    assert all(rcpts != (SERVICE,) for _, _, rcpts, _ in transport.sent)


def test_signing_time_is_what_counts_for_a_pinned_certificate(certs: Certs,
                                                               openssl: OpensslPartner) -> None:
    # Verified long after signing (the certificate has expired by then): still valid, as
    # for a chain, because the signature was made while the certificate was valid.
    signed = crlf(sign(openssl, certs.lotse))
    later = now() + datetime.timedelta(days=400)
    result = verify_smime(signed, [], pinned=[certs.lotse.cert], now=later)
    assert result.valid and result.pinned


def test_on_a_terminal_approve_asks_first(cli: Cli, certs: Certs,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cli("keys", "import", str(certs.lotse.cert_pem))
    _, out, _ = cli("keys", "list", "--json")
    key_id = str(json.loads(out)[0]["id"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["n", "ja"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert cli.fails("keys", "approve", key_id) == f"key {key_id} not approved"
    _, out, _ = cli("keys", "show", key_id, "--json")
    assert json.loads(out)["status"] == "pending"
    _, out, _ = cli("keys", "approve", key_id)
    assert out.rstrip().endswith("is approved now, pinned")
