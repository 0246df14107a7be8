"""S/MIME through the pipeline, with openssl as the partner agency on the other side.

Inbound: openssl encrypts and signs; the worker decrypts, verifies, notes the result in
X-Xgate-* headers and files the plain message. Outbound: a staff member's message is signed
and encrypted by the gateway, and openssl decrypts and verifies what was relayed. Bad input
ends in a verdict on the message, never a crash and never plaintext where encryption is due.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from crypto.at_rest import open_sealed
from gateway import audit
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.keys import approve_key, list_keys
from gateway.keydir.models import KeyStatus
from gateway.models import AuditEntry, Direction, MessageState, SealedContent
from gateway.quarantine.records import ReleaseOutcome, approve_release
from gateway.quarantine.rescan import PipelineRescanner
from gateway.queue.spool import content_context
from gateway.services import Services, build_services
from gateway.settings import Settings
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.openssl_partner import OpensslPartner, crlf, mail
from tests.support.pipeline import bounces, drain, enqueue, filed_copies, load_message
from tests.support.smime_pki import DAY, Party, make_ca, make_crl, make_person, now
from tests.support.warned import assert_warned

MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Hilfeplan fuer Kind A. Vertraulich.\r\n" * 3)


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Party
    partner: Party
    ours: Party
    ours_old: Party
    ours_ec: Party
    stranger_ca: Party
    stranger: Party
    expired: Party
    future: Party
    revoked: Party
    crl: Path
    staff: Party


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("smime-pipeline")
    ca = make_ca(d, "ca")
    stranger_ca = make_ca(d, "stranger-ca", bits=2048)
    revoked = make_person(d, "revoked", PARTNER, ca, bits=2048)
    return Pki(
        directory=d, ca=ca,
        partner=make_person(d, "partner", PARTNER, ca),
        ours=make_person(d, "ours", MAILBOX, ca),
        ours_old=make_person(d, "ours-old", MAILBOX, ca),
        ours_ec=make_person(d, "ours-ec", "ec@jugendamt.example", ca,
                            key=ec.generate_private_key(ec.SECP256R1())),
        stranger_ca=stranger_ca,
        stranger=make_person(d, "stranger", PARTNER, stranger_ca, bits=2048),
        expired=make_person(d, "expired", PARTNER, ca, bits=2048,
                            not_before=now() - 60 * DAY, not_after=now() - DAY),
        future=make_person(d, "future", PARTNER, ca, bits=2048,
                           not_before=now() + DAY, not_after=now() + 60 * DAY),
        revoked=revoked,
        crl=make_crl(d, ca, [revoked]),
        staff=make_person(d, "staff", STAFF, ca),
    )


@pytest.fixture
def openssl(pki: Pki) -> OpensslPartner:
    return OpensslPartner(pki.directory)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, pki: Pki) -> Settings:
    return make_settings(tmp_path / "var", database_url, crypto={
        "trust_anchors_file": str(pki.ca.cert_pem), "crl_files": [str(pki.crl)],
        "unknown_partner_outbound": "either"})


@pytest.fixture
def gw(services: Services, pki: Pki) -> Services:
    """A gateway with a shared mailbox that holds two S/MIME keys (rollover)."""
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
        add_mailbox(s, "ec@jugendamt.example", "EC")
    crypto_setup.own_smime(services, MAILBOX, pki.ours_old)
    crypto_setup.own_smime(services, MAILBOX, pki.ours)
    crypto_setup.own_smime(services, "ec@jugendamt.example", pki.ours_ec)
    return services


def _receive(gw: Services, raw: bytes, rcpt: str = MAILBOX) -> tuple[str, bytes | None]:
    qid = enqueue(gw, [rcpt], raw, mail_from=PARTNER)
    drain(gw)
    filed = filed_copies(gw, rcpt)
    return qid, (filed[-1] if filed else None)


def _headers(content: bytes) -> dict[str, str]:

    parsed = BytesHeaderParser().parsebytes(content)
    return {k: str(v) for k, v in parsed.items() if k.lower().startswith("x-xgate-")}


def _facts(gw: Services, qid: str) -> dict[str, str]:
    message = load_message(gw, qid)
    assert message.facts is not None
    facts: dict[str, str] = json.loads(message.facts)
    return facts


# --- inbound: openssl encrypts ----------------------------------------------------------------


@pytest.mark.parametrize(("cipher", "keyopt", "algorithm"), [
    ("-aes-256-cbc", (), "aes256-cbc, rsaes-pkcs1-v1_5"),
    ("-aes-128-cbc", (), "aes128-cbc, rsaes-pkcs1-v1_5"),
    ("-aes-256-gcm", (), "aes256-gcm, rsaes-pkcs1-v1_5"),
    ("-aes-256-cbc", ("-keyopt", "rsa_padding_mode:oaep"), "aes256-cbc, rsaes-oaep"),
    ("-aes-256-gcm", ("-keyopt", "rsa_padding_mode:oaep"), "aes256-gcm, rsaes-oaep"),
])
def test_openssl_encrypted_is_decrypted_and_filed(gw: Services, pki: Pki, openssl: OpensslPartner,
                                                  cipher: str, keyopt: tuple[str, ...],
                                                  algorithm: str) -> None:
    sealed = openssl.encrypt(ENTITY, pki.ours, cipher=cipher, keyopt=keyopt)
    qid, filed = _receive(gw, mail(sealed, sender=PARTNER, to=MAILBOX))
    assert load_message(gw, qid).state == MessageState.DELIVERED
    assert filed is not None and b"Hilfeplan fuer Kind A." in filed
    assert b"application/pkcs7-mime" not in filed
    headers = _headers(filed)
    assert headers["X-Xgate-Encryption"] == f"S/MIME {algorithm}; key={pki.ours.fingerprint}"
    assert headers["X-Xgate-Signature"] == "none"
    facts = _facts(gw, qid)
    assert facts["encryption"] == "smime" and facts["encryption_algorithm"] == algorithm
    assert facts["decrypted_with"] == pki.ours.fingerprint


def test_openssl_smime_command_and_old_key_from_rollover(gw: Services, pki: Pki,
                                                         openssl: OpensslPartner) -> None:
    sealed = openssl.encrypt(ENTITY, pki.ours_old, command="smime", cipher="-aes256")
    qid, filed = _receive(gw, mail(sealed, sender=PARTNER, to=MAILBOX))
    assert filed is not None and b"Vertraulich" in filed
    assert _facts(gw, qid)["decrypted_with"] == pki.ours_old.fingerprint


@pytest.mark.parametrize("opaque", [True, False])
def test_signed_then_encrypted_verifies(gw: Services, pki: Pki, openssl: OpensslPartner,
                                        opaque: bool) -> None:
    signed = openssl.sign(ENTITY, pki.partner, pki.ca, opaque=opaque)
    sealed = openssl.encrypt(crlf(signed), pki.ours, cipher="-aes-256-gcm")
    qid, filed = _receive(gw, mail(sealed, sender=PARTNER, to=MAILBOX))
    assert filed is not None and b"Hilfeplan fuer Kind A." in filed
    assert b"pkcs7" not in filed
    headers = _headers(filed)
    assert headers["X-Xgate-Signature"] == "valid"
    assert headers["X-Xgate-Signer"].startswith(f"{PARTNER} (S/MIME {pki.partner.fingerprint}")
    facts = _facts(gw, qid)
    assert facts["signature"] == "valid" and facts["signer"] == PARTNER


@pytest.mark.parametrize("command", ["cms", "smime"])
@pytest.mark.parametrize("opaque", [True, False])
def test_signed_only_verifies_and_certificate_is_harvested(
        gw: Services, pki: Pki, openssl: OpensslPartner, opaque: bool, command: str) -> None:

    signed = openssl.sign(ENTITY, pki.partner, pki.ca, opaque=opaque, command=command)
    qid, filed = _receive(gw, mail(signed, sender=PARTNER, to=MAILBOX))
    assert filed is not None and _headers(filed)["X-Xgate-Signature"] == "valid"
    with session_scope(gw.sessions) as s:
        keys = list_keys(s)
        assert [(k.fingerprint, k.status, k.source_detail) for k in keys] == [
            (pki.partner.fingerprint, KeyStatus.PENDING, qid)]
    assert _facts(gw, qid)["encryption"] == "none"


# --- inbound: signatures that must not count ---------------------------------------------------
#
# A signature that is present but fails is quarantined with the precise reason, for every
# sender; a partner an admin set to "warn" gets such mail delivered with a subject prefix and a
# warning part at the top.

BAD_SIGNATURES = ["tampered-detached", "tampered-opaque", "expired", "future", "revoked",
                  "stranger"]


def _revoked_on(pki: Pki) -> datetime:
    crl = x509.load_pem_x509_crl(pki.crl.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(pki.revoked.cert.serial_number)
    assert entry is not None
    return entry.revocation_date_utc


def _tamper_opaque(signed: bytes) -> bytes:
    """Change the content inside an opaque signed-data, keeping the signature as it was."""
    head, _, body = signed.partition(b"\r\n\r\n")
    der = base64.b64decode(b"".join(body.split()))
    assert b"Kind A." in der
    return head + b"\r\n\r\n" + crlf(base64.encodebytes(der.replace(b"Kind A.", b"Kind B.", 1)))


def _badly_signed(pki: Pki, openssl: OpensslPartner, case: str) -> tuple[bytes, str, str]:
    """The partner's signed entity for ``case``, the precise reason and its German form."""
    if case.startswith("tampered"):
        opaque = case == "tampered-opaque"
        signed = crlf(openssl.sign(ENTITY, pki.partner, pki.ca, opaque=opaque))
        tampered = (_tamper_opaque(signed) if opaque
                    else signed.replace(b"Kind A.", b"Kind B.", 1))
        assert tampered != signed
        return (tampered, "tampered: the content was altered after signing (content digest "
                "mismatch)", "der Inhalt wurde nach dem Signieren verändert")
    signer: Party = getattr(pki, case)
    signed = openssl.sign(ENTITY, signer, pki.stranger_ca if case == "stranger" else pki.ca,
                          opaque=False)
    until, since = signer.cert.not_valid_after_utc, signer.cert.not_valid_before_utc
    revoked = _revoked_on(pki)
    return signed, *{
        "expired": (f"certificate expired on {until:%Y-%m-%d}",
                    f"das Zertifikat ist am {until:%d.%m.%Y} abgelaufen"),
        "future": (f"certificate not yet valid (valid from {since:%Y-%m-%d})",
                   f"das Zertifikat ist erst ab dem {since:%d.%m.%Y} gültig"),
        "revoked": (f"certificate revoked on {revoked:%Y-%m-%d}",
                    f"das Zertifikat wurde am {revoked:%d.%m.%Y} widerrufen"),
        "stranger": ("no chain to a trusted CA",
                     "das Zertifikat führt zu keiner vertrauenswürdigen Zertifizierungsstelle"),
    }[case]


def _stored(gw: Services, qid: str) -> bytes:
    message = load_message(gw, qid)
    with session_scope(gw.sessions) as s:
        sealed = s.scalars(select(SealedContent.sealed).where(
            SealedContent.message_id == message.id)).one()
    return open_sealed(gw.master_key, sealed, content_context(qid))


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_failing_signature_is_quarantined_with_the_precise_reason(
        gw: Services, pki: Pki, openssl: OpensslPartner, case: str) -> None:
    entity, reason, _ = _badly_signed(pki, openssl, case)
    raw = mail(entity, sender=PARTNER, to=MAILBOX)
    qid, filed = _receive(gw, raw)
    assert filed is None
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    # No partner record names the sender: the default holds for everyone.
    assert message.reason == f"S/MIME signature fails: {reason}"
    assert _stored(gw, qid) == raw, "the quarantine keeps what arrived"
    facts = _facts(gw, qid)
    assert facts["signature"] == "invalid" and facts["signature_problem"]
    told = sorted(m.recipients[0].address for m in bounces(gw))
    assert told == sorted([PARTNER, MAILBOX]), "the sender and the mailbox are told"


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_failing_signature_is_delivered_with_a_warning_where_the_partner_says_so(
        gw: Services, pki: Pki, openssl: OpensslPartner, case: str) -> None:
    crypto_setup.partner(gw, "Jugendamt B", "jugendamt-b.example",
                         inbound_invalid_signature="warn")
    entity, reason, german = _badly_signed(pki, openssl, case)
    qid, filed = _receive(gw, mail(entity, sender=PARTNER, to=MAILBOX))
    assert load_message(gw, qid).state == MessageState.DELIVERED
    assert filed is not None
    assert_warned(filed, reason, german, sender=PARTNER, to=MAILBOX)
    assert _facts(gw, qid)["signature_warning"] == (
        f"delivered with a visible warning: S/MIME signature fails: {reason}")


def test_a_partner_that_must_sign_validly_is_quarantined_even_with_warn(
        gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    crypto_setup.partner(gw, "Jugendamt B", "jugendamt-b.example",
                         inbound_require_signature=True, inbound_invalid_signature="warn")
    entity, reason, _ = _badly_signed(pki, openssl, "tampered-detached")
    qid, filed = _receive(gw, mail(entity, sender=PARTNER, to=MAILBOX))
    assert filed is None
    assert load_message(gw, qid).reason == (
        f"partner 'Jugendamt B' must sign validly: S/MIME signature fails: {reason}")


def test_unsigned_mail_is_not_affected(gw: Services) -> None:
    qid, filed = _receive(gw, mail(ENTITY, sender=PARTNER, to=MAILBOX))
    assert load_message(gw, qid).state == MessageState.DELIVERED
    assert filed is not None and b"[Signatur" not in filed


def test_the_subject_prefix_is_a_setting(services: Services, pki: Pki,
                                         openssl: OpensslPartner, tmp_path: Path,
                                         database_url: str) -> None:
    settings = make_settings(tmp_path / "var", database_url, crypto={
        "trust_anchors_file": str(pki.ca.cert_pem),
        "invalid_signature_subject_prefix": "[UNSICHER]"})
    gw = build_services(settings, transport=RecordingTransport())
    try:
        with session_scope(gw.sessions) as s:
            add_mailbox(s, MAILBOX, "Hilfeplanung")
        crypto_setup.partner(gw, "Jugendamt B", "jugendamt-b.example",
                             inbound_invalid_signature="warn")
        entity, _, _ = _badly_signed(pki, openssl, "stranger")
        _, filed = _receive(gw, mail(entity, sender=PARTNER, to=MAILBOX,
                                     subject="Hilfeplan für Kind A"))
        assert filed is not None
        parsed = BytesParser(policy=policy.default).parsebytes(filed)
        assert parsed["Subject"] == "[UNSICHER] Hilfeplan für Kind A"
    finally:
        gw.sessions.kw["bind"].dispose()


def test_signer_must_be_the_author(gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    signed = openssl.sign(ENTITY, pki.partner, pki.ca, opaque=True)
    other = "someone.else@jugendamt-b.example"
    qid, filed = _receive(gw, mail(signed, sender=other, to=MAILBOX))
    assert filed is None
    assert load_message(gw, qid).reason == (
        f"S/MIME signature fails: certificate does not name the sender {other}")


def test_released_by_two_admins_it_is_delivered_with_the_warning(
        gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    entity, reason, german = _badly_signed(pki, openssl, "tampered-opaque")
    qid, _ = _receive(gw, mail(entity, sender=PARTNER, to=MAILBOX))
    assert load_message(gw, qid).state == MessageState.QUARANTINED
    with session_scope(gw.sessions) as s:
        for name in ("alice", "bob"):
            add_user(s, name, f"{name}-sehr-geheim-123", admin=True)
    for admin in ("alice", "bob"):
        with session_scope(gw.sessions) as s:
            # The re-scan opens the content with the verify stage, which records the
            # failing signature but does not stop it: the verdict is the inbound policy's.
            result = approve_release(s, qid, admin=admin, reason=f"checked by {admin}",
                                     now=gw.clock(), master_key=gw.master_key,
                                     rescan=PipelineRescanner(gw))
    assert result.outcome == ReleaseOutcome.RELEASED
    drain(gw)
    assert load_message(gw, qid).state == MessageState.DELIVERED
    [filed] = filed_copies(gw, MAILBOX)
    assert_warned(filed, reason, german, sender=PARTNER, to=MAILBOX)
    assert _facts(gw, qid)["inbound_policy"] == "released from quarantine by two admins"


def test_forged_result_headers_from_outside_are_removed(gw: Services, pki: Pki,
                                                        openssl: OpensslPartner) -> None:
    forged = b"X-Xgate-Signature: valid\r\nX-Xgate-Signer: boss@jugendamt.example\r\n"
    _, filed = _receive(gw, mail(ENTITY, sender=PARTNER, to=MAILBOX, extra_headers=forged))
    assert filed is not None
    headers = _headers(filed)
    assert headers["X-Xgate-Signature"] == "none" and "X-Xgate-Signer" not in headers


def test_partner_that_must_encrypt_is_quarantined_when_it_does_not(gw: Services) -> None:
    crypto_setup.partner(gw, "Jugendamt B", "jugendamt-b.example",
                         inbound_require_encryption=True)
    qid, filed = _receive(gw, mail(ENTITY, sender=PARTNER, to=MAILBOX))
    assert filed is None
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED
    assert message.reason is not None and "must encrypt" in message.reason
    notices = [m for m in bounces(gw) if m.recipients[0].address == PARTNER]
    assert len(notices) == 1


# --- inbound: bad input -----------------------------------------------------------------------


def _quarantined(gw: Services, raw: bytes, rcpt: str = MAILBOX) -> str:
    qid, filed = _receive(gw, raw, rcpt)
    assert filed is None
    message = load_message(gw, qid)
    assert message.state == MessageState.QUARANTINED, message.reason
    assert message.reason is not None
    with session_scope(gw.sessions) as s:
        assert audit.verify(s).ok
    return message.reason


def _flip_in_base64_body(message: bytes, index: int) -> bytes:
    import base64

    head, _, body = message.partition(b"\r\n\r\n")
    der = bytearray(base64.b64decode(b"".join(body.split())))
    der[index] ^= 0x01
    return head + b"\r\n\r\n" + crlf(base64.encodebytes(bytes(der)))


def test_wrong_recipient_key(gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    sealed = openssl.encrypt(ENTITY, pki.staff)
    reason = _quarantined(gw, mail(sealed, sender=PARTNER, to=MAILBOX))
    assert reason == "S/MIME message is not encrypted for any key the gateway holds"


@pytest.mark.parametrize(("cipher", "offsets"), [
    # CBC: the last byte of the next-to-last block sets the padding byte; a flip there breaks
    # the padding. (A flip further up garbles a block undetectably: CBC has no integrity,
    # which is why the gateway sends GCM where it can and partners should sign.)
    ("-aes-256-cbc", (-17,)),
    # GCM: any flip, in the ciphertext or in the tag, fails authentication.
    ("-aes-256-gcm", (-5, -40, -60)),
])
def test_flipped_bits_give_one_uniform_answer(gw: Services, pki: Pki, openssl: OpensslPartner,
                                              cipher: str, offsets: tuple[int, ...]) -> None:
    sealed = crlf(openssl.encrypt(ENTITY, pki.ours, cipher=cipher))
    raw = mail(sealed, sender=PARTNER, to=MAILBOX)
    reasons = {_quarantined(gw, _flip_in_base64_body(raw, offset)) for offset in offsets}
    assert reasons == {"decryption failed"}
    assert len([m for m in bounces(gw) if m.recipients[0].address == PARTNER]) == len(offsets)


def test_truncated_der(gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    import base64

    sealed = crlf(openssl.encrypt(ENTITY, pki.ours))
    head, _, body = sealed.partition(b"\r\n\r\n")
    der = base64.b64decode(b"".join(body.split()))
    short = head + b"\r\n\r\n" + crlf(base64.encodebytes(der[: len(der) // 2]))
    reason = _quarantined(gw, mail(short, sender=PARTNER, to=MAILBOX))
    assert reason.startswith("malformed S/MIME message")


def test_3des_envelope_refused(gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    sealed = openssl.encrypt(ENTITY, pki.ours, cipher="-des3")
    reason = _quarantined(gw, mail(sealed, sender=PARTNER, to=MAILBOX))
    assert reason == "S/MIME encryption refused: 3DES is not accepted"


def test_ecdh_recipient_refused(gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    sealed = openssl.encrypt(ENTITY, pki.ours_ec)
    reason = _quarantined(gw, mail(sealed, sender=PARTNER, to="ec@jugendamt.example"),
                          "ec@jugendamt.example")
    assert reason.startswith("S/MIME encryption refused: no code for this recipient type")


def test_garbage_in_pkcs7_mime(gw: Services) -> None:
    entity = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\nR2FyYmFnZSwgbm90IENNUw==\r\n")
    reason = _quarantined(gw, mail(entity, sender=PARTNER, to=MAILBOX))
    assert reason.startswith("malformed S/MIME message")


def test_encrypted_for_mailbox_without_keys(gw: Services, pki: Pki,
                                            openssl: OpensslPartner) -> None:
    with session_scope(gw.sessions) as s:
        add_mailbox(s, "kita@jugendamt.example", "Kita")
    sealed = openssl.encrypt(ENTITY, pki.ours)
    reason = _quarantined(gw, mail(sealed, sender=PARTNER, to="kita@jugendamt.example"),
                          "kita@jugendamt.example")
    assert "holds no smime key" in reason


# --- outbound: the gateway signs and encrypts, openssl reads ---------------------------------


@pytest.fixture
def outbound(gw: Services, pki: Pki,
             tmp_path: Path) -> Iterator[tuple[Services, RecordingTransport]]:
    """The gateway with a relay route for the partner's domain and the staff member's key."""
    transport = RecordingTransport()
    settings = crypto_setup.outbound_settings(tmp_path / "var", gw.settings.database.url,
                                              pki.ca.cert_pem)
    services = build_services(settings, transport=transport, clock=gw.clock)
    crypto_setup.own_smime(services, STAFF, pki.staff)
    yield services, transport
    services.sessions.kw["bind"].dispose()


def _send(services: Services, raw: bytes, rcpts: list[str]) -> str:
    qid = enqueue(services, rcpts, raw, mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    return qid


@pytest.mark.parametrize("gcm", [False, True])
def test_outbound_is_signed_and_encrypted_for_openssl(outbound: tuple[Services, RecordingTransport],
                                                      pki: Pki, openssl: OpensslPartner,
                                                      gcm: bool) -> None:
    services, transport = outbound
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-smime", smime_gcm=gcm)
    crypto_setup.partner_key(services, pki.partner.der)
    qid = _send(services, mail(ENTITY, sender=STAFF, to=PARTNER), [PARTNER])
    assert load_message(services, qid).state == MessageState.DELIVERED
    [(_, _, rcpts, data)] = transport.sent
    assert rcpts == (PARTNER,)
    assert b"Hilfeplan fuer Kind A." not in data
    head = _headers(data)
    assert head["X-Xgate-Encryption"] == f"S/MIME aes256-{'gcm' if gcm else 'cbc'}"
    assert pki.staff.fingerprint in head["X-Xgate-Signature"]
    signed = openssl.decrypt(data, pki.partner)
    content = openssl.verify(signed, pki.ca)
    assert b"Hilfeplan fuer Kind A." in content
    facts = _facts(services, qid)
    assert facts[f"keys:{PARTNER}"] == pki.partner.fingerprint
    assert facts["signed_smime"] == pki.staff.fingerprint


def test_outbound_without_key_is_held_and_sender_told(
        outbound: tuple[Services, RecordingTransport], pki: Pki) -> None:
    services, transport = outbound
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-smime")
    # A pending (harvested, not yet approved) certificate is never used to encrypt.
    crypto_setup.partner_key(services, pki.partner.der, approve=False)
    qid = _send(services, mail(ENTITY, sender=STAFF, to=PARTNER), [PARTNER])
    message = load_message(services, qid)
    assert message.state == MessageState.HELD
    assert message.reason is not None
    assert f"an approved, valid S/MIME certificate for {PARTNER}" in message.reason
    assert [rcpts for _, _, rcpts, _ in transport.sent] == [(STAFF,)]  # only the notice
    [notice] = [m for m in bounces(services) if m.recipients[0].address == STAFF]
    with session_scope(services.sessions) as s:


        sealed = s.scalars(select(SealedContent.sealed).where(
            SealedContent.message_id == notice.id)).one()
    text = open_sealed(services.master_key, sealed, content_context(notice.queue_id))
    assert f"S/MIME certificate for {PARTNER}".encode() in text


def test_outbound_unknown_partner_fails_closed(outbound: tuple[Services, RecordingTransport]
                                               ) -> None:
    services, transport = outbound
    qid = _send(services, mail(ENTITY, sender=STAFF, to="someone@elsewhere.example"),
                ["someone@elsewhere.example"])
    assert load_message(services, qid).state == MessageState.HELD
    assert [rcpts for _, _, rcpts, _ in transport.sent] == [(STAFF,)]  # only the notice


def test_outbound_plaintext_partner_gets_signed_plain_mail(
        outbound: tuple[Services, RecordingTransport], pki: Pki,
        openssl: OpensslPartner) -> None:
    services, transport = outbound
    crypto_setup.partner(services, "Verein", "verein.example", outbound_policy="plaintext",
                         non_sensitive=True)
    _send(services, mail(ENTITY, sender=STAFF, to="info@verein.example"),
          ["info@verein.example"])
    [(_, _, _, data)] = transport.sent
    assert _headers(data)["X-Xgate-Encryption"] == "none (partner marked non-sensitive)"
    assert b"multipart/signed" in data
    assert b"Hilfeplan fuer Kind A." in openssl.verify(data, pki.ca)


def test_outbound_mixed_recipients_each_get_their_form(
        outbound: tuple[Services, RecordingTransport], pki: Pki,
        openssl: OpensslPartner) -> None:
    services, transport = outbound
    crypto_setup.partner_key(services, pki.partner.der)
    crypto_setup.partner(services, "Verein", "verein.example", outbound_policy="plaintext",
                         non_sensitive=True)
    _send(services, mail(ENTITY, sender=STAFF, to=f"{PARTNER}, {MAILBOX}"),
          [PARTNER, MAILBOX, "info@verein.example"])
    sent = {rcpts: data for _, _, rcpts, data in transport.sent}
    assert set(sent) == {(PARTNER,), ("info@verein.example",)}
    assert b"Hilfeplan fuer Kind A." not in sent[(PARTNER,)]
    assert b"Hilfeplan" in openssl.decrypt(sent[(PARTNER,)], pki.partner)
    [filed] = filed_copies(services, MAILBOX, notices=True)
    assert b"Hilfeplan fuer Kind A." in filed


def test_held_message_goes_out_when_the_key_is_approved(
        outbound: tuple[Services, RecordingTransport], pki: Pki,
        openssl: OpensslPartner) -> None:
    services, transport = outbound
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-smime")
    crypto_setup.partner_key(services, pki.partner.der, approve=False)
    qid = _send(services, mail(ENTITY, sender=STAFF, to=PARTNER), [PARTNER])
    assert load_message(services, qid).state == MessageState.HELD
    with session_scope(services.sessions) as s:
        [key] = list_keys(s)
        approve_key(s, key.id, "admin", services.clock())
    drain(services)
    assert load_message(services, qid).state == MessageState.DELIVERED
    [data] = [d for _, _, rcpts, d in transport.sent if rcpts == (PARTNER,)]
    assert b"Hilfeplan" in openssl.decrypt(data, pki.partner)
    with session_scope(services.sessions) as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(
            AuditEntry.queue_id == qid).order_by(AuditEntry.seq))]
    assert actions.index("held") < actions.index("requeued") < actions.index("delivered")


def test_forged_result_headers_inside_the_encryption_are_removed(
        gw: Services, pki: Pki, openssl: OpensslPartner) -> None:
    inner = (b"Content-Type: text/plain; charset=utf-8\r\nX-Xgate-Signature: valid\r\n"
             b"Subject: Hilfeplan (geschuetzt)\r\n\r\nInhalt\r\n")
    sealed = openssl.encrypt(inner, pki.ours)
    _, filed = _receive(gw, mail(sealed, sender=PARTNER, to=MAILBOX, subject="..."))
    assert filed is not None
    assert filed.count(b"X-Xgate-Signature:") == 1
    assert _headers(filed)["X-Xgate-Signature"] == "none"
    assert BytesHeaderParser().parsebytes(filed)["Subject"] == "Hilfeplan (geschuetzt)"
