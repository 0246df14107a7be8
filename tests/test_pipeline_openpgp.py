"""OpenPGP through the pipeline, with the real gpg CLI as the partner agency.

gpg encrypts and signs (RSA-3072 and Curve25519, PGP/MIME and inline); the worker decrypts
with the mailbox's own key, verifies against the partner's key from the directory and files
the plain message. The other way round, what the gateway relays is read by ``gpg --decrypt``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

import pytest

from crypto.pgp_keys import generate_key, public_part
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import own_keys_for
from gateway.keydir.own_openpgp import import_own_openpgp
from gateway.mime.entity import split_entity
from gateway.models import Direction, MessageState
from gateway.services import Services, build_services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.gpg_partner import GpgPartner, mail_message
from tests.support.pipeline import bounces, drain, enqueue, filed_copies, load_message
from tests.support.warned import assert_warned

MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "asd@partner.example"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Gutachten zu Kind B. Vertraulich.\r\n" * 3)
TEXT = b"Gutachten zu Kind B. Vertraulich.\r\n"


@dataclass
class World:
    gpg: GpgPartner
    rsa: str  # partner key fingerprints
    curve: str
    stranger: str  # a key of the partner's that the gateway does not know


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with GpgPartner.create(tmp_path_factory.mktemp("gpg-partner")) as gpg:
        yield World(gpg, gpg.generate(f"ASD Partner <{PARTNER}>", "rsa3072"),
                    gpg.generate(f"ASD Partner Curve <{PARTNER}>", "cv25519"),
                    gpg.generate(f"Unknown <{PARTNER}>", "cv25519"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url, crypto={
        "unknown_partner_outbound": "either"},
        delivery={"routes": [{"domain": "*", "host": "relay.invalid", "port": 25}]})


@dataclass
class Gateway:
    services: Services
    transport: RecordingTransport
    own: dict[str, str]  # algorithm -> fingerprint of the mailbox's keys


@pytest.fixture(scope="module")
def own_secrets(world: World) -> dict[str, bytes]:
    """The gateway's own secret keys, made once (RSA-3072 generation takes a while)."""
    secrets = {algorithm: generate_key(f"Hilfeplanung <{MAILBOX}>", algorithm=algorithm,
                                       expires=None)
               for algorithm in ("rsa3072", "cv25519")}
    secrets["staff"] = generate_key(f"Sachbearbeitung <{STAFF}>", algorithm="cv25519",
                                    expires=None)
    for name in ("rsa3072", "cv25519"):
        world.gpg.import_keys(public_part(secrets[name]))
    return secrets


@pytest.fixture
def gw(settings: Settings, world: World, own_secrets: dict[str, bytes]) -> Iterator[Gateway]:
    transport = RecordingTransport()
    services = build_services(settings, transport=transport)
    own: dict[str, str] = {}
    with session_scope(services.sessions) as s:
        add_mailbox(s, MAILBOX, "Hilfeplanung")
        for name, secret in own_secrets.items():
            key = import_own_openpgp(s, services.master_key,
                                     STAFF if name == "staff" else MAILBOX, secret,
                                     actor="test", now=services.clock())
            own[name] = key.fingerprint
    for fpr in (world.rsa, world.curve):
        crypto_setup.partner_key(services, world.gpg.export_public(fpr))
    yield Gateway(services, transport, own)
    services.sessions.kw["bind"].dispose()


def _as_partner_mail(raw: bytes) -> bytes:
    return (raw.replace(b"From: asd@partner.example", f"From: {PARTNER}".encode(), 1)
            .replace(b"To: jugendamt@xgate.example", f"To: {MAILBOX}".encode(), 1))


def _receive(gw: Gateway, raw: bytes) -> tuple[str, bytes | None]:
    services = gw.services
    qid = enqueue(services, [MAILBOX], _as_partner_mail(raw), mail_from=PARTNER)
    drain(services)
    filed = filed_copies(services, MAILBOX)
    return qid, (filed[-1] if filed else None)


def _headers(content: bytes) -> dict[str, str]:
    parsed = BytesHeaderParser().parsebytes(content)
    return {k: str(v) for k, v in parsed.items() if k.lower().startswith("x-xgate-")}


def _facts(gw: Gateway, qid: str) -> dict[str, str]:
    raw = load_message(gw.services, qid).facts
    assert raw is not None
    facts: dict[str, str] = json.loads(raw)
    return facts


@pytest.mark.parametrize("signer", ["rsa", "curve"])
@pytest.mark.parametrize("ours", ["rsa3072", "cv25519"])
def test_gpg_pgp_mime_encrypted_and_signed(gw: Gateway, world: World, signer: str,
                                           ours: str) -> None:
    signer_fpr = getattr(world, signer)
    raw = world.gpg.pgp_mime_encrypted(ENTITY, [gw.own[ours]], signer=signer_fpr)
    qid, filed = _receive(gw, raw)
    assert load_message(gw.services, qid).state == MessageState.DELIVERED
    assert filed is not None and TEXT in filed and b"BEGIN PGP" not in filed
    headers = _headers(filed)
    assert headers["X-Xgate-Encryption"].startswith("OpenPGP ")
    assert headers["X-Xgate-Signature"] == "valid"
    assert signer_fpr in headers["X-Xgate-Signer"]
    facts = _facts(gw, qid)
    assert facts["encryption"] == "openpgp" and facts["signer_fingerprint"] == signer_fpr


def test_gpg_inline_encrypted_and_signed(gw: Gateway, world: World) -> None:
    raw = world.gpg.inline_encrypted(TEXT * 2, [gw.own["cv25519"]], signer=world.curve)
    _, filed = _receive(gw, raw)
    assert filed is not None and b"BEGIN PGP" not in filed
    assert TEXT in _text(filed)
    assert _headers(filed)["X-Xgate-Signature"] == "valid"


def _text(message: bytes) -> bytes:
    """The decoded body of a single-part message (inline PGP comes back base64-encoded)."""
    body = BytesParser(policy=policy.default).parsebytes(message).get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_gpg_pgp_mime_signed_only(gw: Gateway, world: World) -> None:
    _qid, filed = _receive(gw, world.gpg.pgp_mime_signed(ENTITY, world.rsa))
    assert filed is not None and TEXT in filed
    headers = _headers(filed)
    assert headers["X-Xgate-Signature"] == "valid" and headers["X-Xgate-Encryption"] == "none"


def test_gpg_clearsigned_inline(gw: Gateway, world: World) -> None:
    _, filed = _receive(gw, world.gpg.inline_clearsigned(TEXT, world.curve))
    assert filed is not None and b"BEGIN PGP SIGNED" not in filed
    assert TEXT in _text(filed)
    assert _headers(filed)["X-Xgate-Signature"] == "valid"


# A signature that is present but fails is quarantined with the precise reason; a partner set
# to "warn" gets such mail delivered with the subject prefix and a warning part at the top.

BAD_SIGNATURES = ["tampered", "tampered-encrypted", "unknown-signer"]


def _badly_signed(gw: Gateway, world: World, case: str) -> tuple[bytes, str, str]:
    """The partner's message for ``case``, the precise reason and its German form."""
    if case == "unknown-signer":
        return (world.gpg.pgp_mime_signed(ENTITY, world.stranger),
                f"unknown OpenPGP signer key {world.stranger[-16:]}",
                "der Signaturschlüssel ist dem Gateway nicht bekannt")
    if case == "tampered":
        signed = world.gpg.pgp_mime_signed(ENTITY, world.rsa)
        tampered = signed.replace(b"Kind B.", b"Kind C.", 1)
    else:
        # Signed, then encrypted, with the signed entity changed before encryption: the
        # signature inside the encryption no longer covers what it is sent with.
        signed = world.gpg.pgp_mime_signed(ENTITY, world.rsa)
        tampered = _resealed(gw, world, signed.replace(b"Kind B.", b"Kind C.", 1))
    assert tampered != signed
    return (tampered, "tampered: the content was altered after signing (bad signature)",
            "der Inhalt wurde nach dem Signieren verändert")


def _resealed(gw: Gateway, world: World, signed: bytes) -> bytes:
    """A PGP/MIME multipart/signed message, encrypted as a whole for the mailbox."""
    _, entity = split_entity(signed)
    return world.gpg.pgp_mime_encrypted(entity, [gw.own["cv25519"]])


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_failing_signature_is_quarantined_with_the_precise_reason(gw: Gateway, world: World,
                                                                  case: str) -> None:
    raw, reason, _ = _badly_signed(gw, world, case)
    assert _quarantined(gw, raw) == f"OpenPGP signature fails: {reason}"
    told = sorted(m.recipients[0].address for m in bounces(gw.services))
    assert told == sorted([PARTNER, MAILBOX])


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_failing_signature_is_delivered_with_a_warning_where_the_partner_says_so(
        gw: Gateway, world: World, case: str) -> None:
    crypto_setup.partner(gw.services, "ASD", "partner.example",
                         inbound_invalid_signature="warn")
    raw, reason, german = _badly_signed(gw, world, case)
    qid, filed = _receive(gw, raw)
    assert load_message(gw.services, qid).state == MessageState.DELIVERED
    assert filed is not None and b"BEGIN PGP" not in filed
    assert_warned(filed, reason, german, sender=PARTNER, to=MAILBOX)


def _quarantined(gw: Gateway, raw: bytes) -> str:
    qid, filed = _receive(gw, raw)
    assert filed is None
    message = load_message(gw.services, qid)
    assert message.state == MessageState.QUARANTINED, message.reason
    assert message.reason is not None
    return message.reason


def test_no_mdc_refused(gw: Gateway, world: World) -> None:
    armored = world.gpg.encrypt(TEXT, [gw.own["rsa3072"]], extra=("--rfc2440",))

    reason = _quarantined(gw, mail_message("text/plain", armored))
    assert reason == "OpenPGP message without integrity protection (no MDC) refused"


def test_wrong_key_and_flipped_bit_give_one_answer(gw: Gateway, world: World) -> None:
    wrong = world.gpg.pgp_mime_encrypted(ENTITY, [world.curve], signer=world.rsa)
    good = world.gpg.pgp_mime_encrypted(ENTITY, [gw.own["cv25519"]], signer=world.rsa,
                                        ).decode()
    lines = good.split("\r\n")
    # Change one base64 character deep inside the armored ciphertext.
    index = max(i for i, line in enumerate(lines) if len(line) == 64) - 1
    line = lines[index]
    lines[index] = line[:10] + ("A" if line[10] != "A" else "B") + line[11:]
    flipped = "\r\n".join(lines).encode()
    assert {_quarantined(gw, wrong), _quarantined(gw, flipped)} == {"decryption failed"}


def test_truncated_armor(gw: Gateway, world: World) -> None:
    good = world.gpg.pgp_mime_encrypted(ENTITY, [gw.own["cv25519"]], signer=world.rsa)
    cut = good[: good.index(b"-----END PGP MESSAGE-----") - 200] + b"\r\n--x--\r\n"
    reason = _quarantined(gw, cut)
    assert reason in ("decryption failed",) or reason.startswith(("malformed", "unparseable"))


# --- outbound --------------------------------------------------------------------------------


def test_outbound_sealed_for_gpg(gw: Gateway, world: World) -> None:
    services = gw.services
    crypto_setup.partner(services, "ASD", "partner.example", outbound_policy="require-openpgp")
    raw = (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: Gutachten\r\n"
           "Message-ID: <o1@jugendamt.example>\r\n").encode() + ENTITY
    qid = enqueue(services, [PARTNER], raw, mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    assert load_message(services, qid).state == MessageState.DELIVERED
    [(_, _, _, data)] = gw.transport.sent
    assert TEXT not in data and b"multipart/encrypted" in data
    assert _headers(data)["X-Xgate-Encryption"] == "OpenPGP"
    armored = data[data.index(b"-----BEGIN PGP MESSAGE-----"):]
    armored = armored[: armored.index(b"-----END PGP MESSAGE-----") + 25]
    with session_scope(services.sessions) as s:
        [staff_key] = own_keys_for(s, services.master_key, STAFF, KeyKind.OPENPGP)
    world.gpg.import_keys(staff_key.public)
    outcome = world.gpg.decrypt(armored)
    assert outcome.has("DECRYPTION_OKAY") and outcome.has("GOODSIG"), outcome.stderr
    assert TEXT in outcome.stdout
    validsig = outcome.args("VALIDSIG")
    assert validsig is not None and staff_key.fingerprint in validsig


def test_outbound_inline_for_a_partner_that_needs_it(gw: Gateway, world: World) -> None:
    services = gw.services
    crypto_setup.partner(services, "ASD", "partner.example", outbound_policy="require-openpgp",
                         openpgp_inline=True)
    raw = (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: Gutachten\r\n"
           "Message-ID: <o2@jugendamt.example>\r\n").encode() + ENTITY
    enqueue(services, [PARTNER], raw, mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    [(_, _, _, data)] = gw.transport.sent
    assert _headers(data)["X-Xgate-Encryption"] == "OpenPGP inline"
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    body = parsed.get_payload(decode=True)
    assert isinstance(body, bytes) and body.startswith(b"-----BEGIN PGP MESSAGE-----")
    outcome = world.gpg.decrypt(body)
    assert outcome.has("DECRYPTION_OKAY") and outcome.has("GOODSIG"), outcome.stderr
    assert TEXT in outcome.stdout
