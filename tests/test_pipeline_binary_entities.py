"""Binary bodies inside an encryption come out byte for byte, and leave 7-bit/8-bit safe.

Inside an encryption the channel is binary-clean, so a partner may send a body in
Content-Transfer-Encoding binary there (RFC 8551 3.1.2): ``openssl cms -sign -binary``, then
``openssl cms -encrypt -binary``, or gpg encrypting a MIME entity as it stands. A bare CR or
LF in such a body (or in the DER of a signature sent as binary) is data, not a line break.
The real tools make the messages; the worker decrypts, verifies, files or relays, and the
attachment must decode to exactly the bytes the partner attached, in a message that an SMTP
relay without BINARYMIME carries intact (the binary body re-encoded in base64).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from crypto.canonical import canonicalize
from crypto.pgp_keys import generate_key, public_part
from gateway.db import session_scope
from gateway.keydir.own_openpgp import import_own_openpgp
from gateway.models import Direction, MessageState
from gateway.services import Services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.gpg_partner import GpgPartner, mail_message
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import drain, enqueue, filed_copies, load_message
from tests.support.sink import SmtpSink
from tests.support.smime_pki import Party, make_ca, make_person

MAILBOX = "hilfeplan@jugendamt.example"
PERSON = "fachkraft@jugendamt.example"  # no mailbox: relayed to the office's mail server
PARTNER = "fachdienst@jugendamt-b.example"
BOUNDARY = b"=_binary_entity_7d1f"
FILENAME = "akte.bin"


def _attachment() -> bytes:
    """Octets a text canonicaliser would change: bare CR and LF, CR CR LF, LF CR, NUL, a
    line that is a lone dot (SMTP transparency), "From " at a line start, long runs
    without any line break; and random bytes rich in CR and LF."""
    rng = random.Random(8551)
    noise = bytes(rng.choice(b"\r\n\x00\xff.-Fa ") for _ in range(6000))
    data = (bytes(range(256)) + b"\r\n.\r\n" + b"\n\n\r\r\r\n\n\r" + b"From x\r\n"
            + b"\x00" * 16 + b"%PDF-1.7\rline\nline\r\n" + noise + rng.randbytes(20000)
            + b"\x00END")
    assert BOUNDARY not in data
    return data


ATTACHMENT = _attachment()
ENTITY = (b'Content-Type: multipart/mixed; boundary="' + BOUNDARY + b'"\r\n\r\n'
          b"--" + BOUNDARY + b"\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Anbei die Akte zu Kind D.\r\n"
          b"--" + BOUNDARY + b"\r\n"
          b'Content-Type: application/octet-stream; name="' + FILENAME.encode() + b'"\r\n'
          b"Content-Transfer-Encoding: binary\r\n"
          b'Content-Disposition: attachment; filename="' + FILENAME.encode() + b'"\r\n\r\n'
          + ATTACHMENT + b"\r\n--" + BOUNDARY + b"--\r\n")


def _check_delivered(message: bytes) -> None:
    """The attachment decodes to the partner's bytes, and the message is transport-safe."""
    parsed = BytesParser(policy=policy.default).parsebytes(message)
    assert isinstance(parsed, EmailMessage)
    [part] = [p for p in parsed.walk() if p.get_filename() == FILENAME]
    assert part.get_payload(decode=True) == ATTACHMENT
    text = parsed.get_body(("plain",))
    assert text is not None and "Anbei die Akte zu Kind D." in text.get_content()
    assert part["Content-Transfer-Encoding"] == "base64"
    assert canonicalize(message) == message, "a bare CR or LF left in the delivered message"
    assert b"\x00" not in message


def _xgate(message: bytes) -> dict[str, str]:
    parsed = BytesParser(policy=policy.default).parsebytes(message, headersonly=True)
    return {k: str(v) for k, v in parsed.items() if k.lower().startswith("x-xgate-")}


# --- S/MIME: openssl as the partner -----------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Party
    partner: Party
    ours: Party
    person: Party


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("binary-smime")
    ca = make_ca(d, "ca", bits=2048)
    return Pki(ca, make_person(d, "partner", PARTNER, ca, bits=2048),
               make_person(d, "ours", MAILBOX, ca), make_person(d, "person", PERSON, ca))


@pytest.fixture
def openssl(tmp_path: Path) -> OpensslPartner:
    return OpensslPartner(tmp_path)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, pki: Pki) -> Settings:
    return make_settings(tmp_path / "var", database_url, crypto={
        "trust_anchors_file": str(pki.ca.cert_pem)})


@pytest.fixture
def gw(services: Services, pki: Pki) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
    crypto_setup.own_smime(services, MAILBOX, pki.ours)
    return services


def _sign(openssl: OpensslPartner, pki: Pki, form: str) -> bytes:
    """The partner's signed entity, as ``openssl cms -sign -binary`` makes it."""
    signer = ("-md", "sha256", "-signer", str(pki.partner.cert_pem), "-inkey",
              str(pki.partner.key_pem), "-certfile", str(pki.ca.cert_pem))
    if form == "detached":
        # multipart/signed: openssl's own lines end in LF, the content is as given.
        return openssl.run("cms", "-sign", "-binary", "-outform", "SMIME", *signer,
                           data=ENTITY)
    if form == "opaque-base64":
        return openssl.run("cms", "-sign", "-binary", "-nodetach", "-outform", "SMIME",
                           *signer, data=ENTITY)
    der = openssl.run("cms", "-sign", "-binary", "-nodetach", "-outform", "DER", *signer,
                      data=ENTITY)
    # openssl itself takes the signature over the binary entity as it stands.
    assert openssl.run("cms", "-verify", "-binary", "-inform", "DER", "-CAfile",
                       str(pki.ca.cert_pem), data=der) == ENTITY
    assert der.count(b"\r") + der.count(b"\n") > 0  # what a canonicaliser used to change
    return (b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"'
            b"\r\nContent-Transfer-Encoding: binary\r\n"
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + der)


@pytest.mark.parametrize("form", ["opaque-der", "opaque-base64", "detached"])
def test_openssl_binary_signed_then_encrypted(gw: Services, pki: Pki, openssl: OpensslPartner,
                                              form: str) -> None:
    signed = _sign(openssl, pki, form)
    sealed = openssl.encrypt(signed, pki.ours, cipher="-aes-256-gcm")
    # openssl on the receiving side reads the same message.
    assert openssl.decrypt(sealed, pki.ours) == signed
    qid = enqueue(gw, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX), mail_from=PARTNER)
    drain(gw)
    message = load_message(gw, qid)
    assert message.state == MessageState.DELIVERED, message.reason
    [filed] = filed_copies(gw, MAILBOX)
    _check_delivered(filed)
    headers = _xgate(filed)
    assert headers["X-Xgate-Signature"] == "valid"
    assert headers["X-Xgate-Encryption"].startswith("S/MIME aes256-gcm")
    assert message.facts is not None and json.loads(message.facts)["signature"] == "valid"


def test_openssl_binary_attachment_encrypted_without_signature(
        gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    sealed = openssl.encrypt(ENTITY, pki.ours, cipher="-aes-256-cbc")
    qid = enqueue(gw, [MAILBOX], mail(sealed, sender=PARTNER, to=MAILBOX), mail_from=PARTNER)
    drain(gw)
    assert load_message(gw, qid).state == MessageState.DELIVERED
    [filed] = filed_copies(gw, MAILBOX)
    _check_delivered(filed)
    assert _xgate(filed)["X-Xgate-Signature"] == "none"


def test_binary_attachment_relayed_intact_over_smtp(
        pki: Pki, openssl: OpensslPartner, sink: SmtpSink,
        relay_services: Callable[..., Services]) -> None:
    """To the office's own mail server through the real relay (no BINARYMIME at the sink):
    what the server stores decodes to the partner's bytes."""
    services = relay_services(sink)
    crypto_setup.own_smime(services, PERSON, pki.person)
    signed = _sign(openssl, pki, "opaque-der")
    sealed = openssl.encrypt(signed, pki.person, cipher="-aes-256-gcm")
    qid = enqueue(services, [PERSON], mail(sealed, sender=PARTNER, to=PERSON),
                  mail_from=PARTNER)
    drain(services)
    assert load_message(services, qid).state == MessageState.DELIVERED
    [delivery] = sink.deliveries
    assert delivery.rcpt_tos == (PERSON,)
    assert "BODY=8BITMIME" not in delivery.mail_options  # base64: nothing 8-bit left
    _check_delivered(delivery.content)


def test_outbound_binary_attachment_reaches_the_partner_intact(
        pki: Pki, openssl: OpensslPartner, sink: SmtpSink,
        relay_services: Callable[..., Services]) -> None:
    """Staff send a body in Content-Transfer-Encoding binary: signing and encrypting
    canonicalise line endings, so it goes out base64 inside; the partner's openssl decrypts
    and verifies it, and the attachment is the caseworker's bytes."""
    services = relay_services(sink)
    crypto_setup.own_smime(services, PERSON, pki.person)
    crypto_setup.partner_key(services, pki.partner.cert_pem.read_bytes())
    # Not mail(): that would turn the attachment's bare CR and LF into CRLF.
    raw = (f"From: {PERSON}\r\nTo: {PARTNER}\r\nSubject: Akte\r\n"
           "MIME-Version: 1.0\r\n").encode() + ENTITY
    qid = enqueue(services, [PARTNER], raw, mail_from=PERSON, direction=Direction.OUTBOUND)
    drain(services)
    assert load_message(services, qid).state == MessageState.DELIVERED
    [delivery] = sink.deliveries
    signed = openssl.decrypt(delivery.content, pki.partner)
    _check_delivered(openssl.verify(signed, pki.ca))


# --- OpenPGP: gpg as the partner --------------------------------------------------------------


@dataclass
class PgpWorld:
    gpg: GpgPartner
    signer: str
    ours: bytes  # the mailbox's secret key
    ours_fpr: str


@pytest.fixture(scope="module")
def pgp_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgpWorld]:
    if shutil.which("gpg") is None:
        pytest.skip("gpg binary not installed")
    with GpgPartner.create(tmp_path_factory.mktemp("gpg-binary")) as gpg:
        signer = gpg.generate(f"ASD Partner <{PARTNER}>", "cv25519")
        ours = generate_key(f"Hilfeplanung <{MAILBOX}>", algorithm="cv25519", expires=None)
        gpg.import_keys(public_part(ours))
        fpr = gpg.run("--with-colons", "--fingerprint", MAILBOX).stdout
        line = next(x for x in fpr.decode().splitlines() if x.startswith("fpr:"))
        yield PgpWorld(gpg, signer, ours, line.split(":")[9])


@pytest.fixture
def pgp_gw(services: Services, pgp_world: PgpWorld) -> Services:
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
        import_own_openpgp(s, services.master_key, MAILBOX, pgp_world.ours, actor="test",
                           now=services.clock())
    crypto_setup.partner_key(services, pgp_world.gpg.export_public(pgp_world.signer))
    return services


def _pgp_mime(encrypted: bytes, *, armored: bool) -> bytes:
    """RFC 3156 multipart/encrypted around gpg's output; binary OpenPGP travels in base64."""
    if armored:
        payload = b"Content-Type: application/octet-stream\r\n\r\n" + canonicalize(encrypted)
    else:
        payload = (b'Content-Type: application/octet-stream; name="encrypted.gpg"\r\n'
                   b"Content-Transfer-Encoding: base64\r\n\r\n"
                   + base64.encodebytes(encrypted).replace(b"\n", b"\r\n"))
    body = (b"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            b"--enc\r\n" + payload + b"\r\n--enc--\r\n")
    return mail_message('multipart/encrypted; protocol="application/pgp-encrypted"; '
                        'boundary="enc"', body, sender=PARTNER, to=MAILBOX)


@pytest.mark.parametrize("armored", [True, False])
@pytest.mark.parametrize("signed", [True, False])
def test_gpg_pgp_mime_with_binary_attachment(pgp_gw: Services, pgp_world: PgpWorld,
                                             armored: bool, signed: bool) -> None:
    # gpg encrypts the entity as it stands: a binary literal packet (no --textmode).
    encrypted = pgp_world.gpg.encrypt(ENTITY, [pgp_world.ours_fpr], armor=armored,
                                      signer=pgp_world.signer if signed else None)
    qid = enqueue(pgp_gw, [MAILBOX], _pgp_mime(encrypted, armored=armored),
                  mail_from=PARTNER)
    drain(pgp_gw)
    message = load_message(pgp_gw, qid)
    assert message.state == MessageState.DELIVERED, message.reason
    [filed] = filed_copies(pgp_gw, MAILBOX)
    _check_delivered(filed)
    headers = _xgate(filed)
    assert headers["X-Xgate-Encryption"].startswith("OpenPGP")
    assert headers["X-Xgate-Signature"] == ("valid" if signed else "none")
