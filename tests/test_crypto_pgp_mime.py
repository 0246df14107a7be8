"""PGP/MIME (RFC 3156) and inline PGP against the real gpg CLI as the partner's mail client.

Partner mail is built as a client builds it: gpg's armored output wrapped in
multipart/encrypted, a detached signature in multipart/signed, or an armored block as a
text/plain body. What the gateway produces is taken apart with the email package and checked
with ``gpg --decrypt`` / ``gpg --verify``. Every test that involves a backend runs on both.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

import pytest

from crypto.pgp_backend import (
    DECRYPTION_FAILED,
    REASON_BAD_SIGNATURE,
    PgpBackend,
    PgpError,
    PgpMalformed,
    PgpNoIntegrity,
)
from crypto.pgp_gnupg import GnupgBackend
from crypto.pgp_keys import cert_fingerprint, generate_key, public_part
from crypto.pgp_mime import (
    PgpKind,
    canonicalize,
    classify,
    open_pgp,
    seal_pgp_mime,
    sign_pgp_mime,
)
from crypto.pgp_sequoia import SequoiaBackend
from tests.support.gpg_partner import GpgPartner, mail_message

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg binary not installed")

FAILED = "^" + re.escape(DECRYPTION_FAILED) + "$"
TEXT = "Guten Tag,\nanbei der Hilfeplan für Kind A.\n\nMit freundlichen Grüßen\n".encode()
ENTITY = canonicalize(
    b'Content-Type: multipart/mixed; boundary="outer"\n\n'
    b"--outer\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n\n"
    b"Guten Tag,\nanbei der Hilfeplan f=C3=BCr Kind A.\n\n"
    b"--outer\n"
    b'Content-Type: application/pdf; name="hilfeplan.pdf"\n'
    b"Content-Transfer-Encoding: base64\n"
    b'Content-Disposition: attachment; filename="hilfeplan.pdf"\n\n'
    b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\n"
    b"--outer--\n"
)


@dataclass
class World:
    partner: GpgPartner
    rsa: str
    curve: str
    stranger: str
    certs: list[bytes]  # what the gateway's directory holds for the partner
    gw: bytes  # the gateway's secret key
    gw_fpr: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with GpgPartner.create(tmp_path_factory.mktemp("partner")) as partner:
        rsa = partner.generate("Jugendamt Nord <ASD@ja-nord.example>", "rsa3072")
        curve = partner.generate("Beratungsstelle <eb@beratung.example>", "cv25519")
        stranger = partner.generate("Stranger <s@other.example>", "cv25519")
        gw = generate_key("Jugendamt <ja@xgate.example>", algorithm="cv25519", expires=None)
        partner.import_keys(public_part(gw))
        certs = [partner.export_public(rsa), partner.export_public(curve)]
        yield World(partner, rsa, curve, stranger, certs, gw, cert_fingerprint(gw))


@pytest.fixture(scope="module", params=["gnupg", "sequoia"])
def backend(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgpBackend]:
    home = tmp_path_factory.mktemp(f"gw-{request.param}")
    gnupg = GnupgBackend(home / "gnupg")
    yield gnupg if request.param == "gnupg" else SequoiaBackend(fallback=gnupg)
    GpgPartner(home / "gnupg").close()


def _parse(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=compat32)


def _text_of(entity: bytes) -> bytes:
    msg = _parse(entity)
    assert msg.get_content_type() == "text/plain"
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _signer_of(name: str, world: World) -> str:
    return world.rsa if name == "rsa" else world.curve


# --- classify ---------------------------------------------------------------------------------


def test_classify(world: World) -> None:
    p = world.partner
    assert classify(p.pgp_mime_encrypted(ENTITY, [world.gw_fpr])) is PgpKind.MIME_ENCRYPTED
    assert classify(p.pgp_mime_signed(ENTITY, world.rsa)) is PgpKind.MIME_SIGNED
    assert classify(p.inline_encrypted(TEXT, [world.gw_fpr])) is PgpKind.INLINE_ENCRYPTED
    assert classify(p.inline_clearsigned(TEXT, world.rsa)) is PgpKind.INLINE_SIGNED
    assert classify(mail_message("text/plain", b"Hallo\r\n")) is None
    smime = mail_message('multipart/signed; protocol="application/pkcs7-signature"; '
                         'micalg=sha-256; boundary="b"', b"--b\r\n\r\nx\r\n--b--\r\n")
    assert classify(smime) is None
    inner = p.inline_encrypted(TEXT, [world.gw_fpr])
    forwarded = mail_message('multipart/mixed; boundary="m"',
                             b"--m\r\nContent-Type: message/rfc822\r\n\r\n" + inner
                             + b"\r\n--m--\r\n")
    assert classify(forwarded) is None  # a forwarded PGP mail is an attachment, not ours
    attached = mail_message(
        'multipart/mixed; boundary="m"',
        b"--m\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--m\r\n"
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=x.asc\r\n\r\n"
        + p.encrypt(TEXT, [world.gw_fpr]) + b"\r\n--m--\r\n")
    assert classify(attached) is None


# --- PGP/MIME from the partner -----------------------------------------------------------------


@pytest.mark.parametrize("signer", ["rsa", "curve"])
def test_open_pgp_mime_encrypted_and_signed(world: World, backend: PgpBackend,
                                            signer: str) -> None:
    fpr = _signer_of(signer, world)
    raw = world.partner.pgp_mime_encrypted(ENTITY, [world.gw_fpr], signer=fpr)

    opened = open_pgp(raw, backend, [world.gw], world.certs)

    assert opened.kind is PgpKind.MIME_ENCRYPTED and not opened.inline
    assert opened.content == ENTITY
    assert opened.encrypted and opened.recipient_fingerprint == world.gw_fpr
    assert opened.signed and opened.signature_valid and opened.reason is None
    assert opened.signer_fingerprint == fpr
    assert opened.signer_emails == (("asd@ja-nord.example",) if signer == "rsa"
                                    else ("eb@beratung.example",))
    assert opened.cipher == "aes256"  # the in-process backend knows it for gpg's SEIPD v1


def test_open_pgp_mime_encrypted_unsigned_lf_line_endings(world: World,
                                                          backend: PgpBackend) -> None:
    raw = world.partner.pgp_mime_encrypted(ENTITY, [world.gw_fpr]).replace(b"\r\n", b"\n")
    opened = open_pgp(raw, backend, [world.gw], world.certs)
    assert opened.content == ENTITY
    assert not opened.signed and opened.signer_emails == ()


def test_open_signed_then_encrypted_as_two_mime_layers(world: World,
                                                       backend: PgpBackend) -> None:
    """RFC 3156 6.1: multipart/signed inside multipart/encrypted."""
    signed_message = world.partner.pgp_mime_signed(ENTITY, world.curve)
    inner = b"Content-Type:" + signed_message.split(b"\r\nContent-Type:", 1)[1]
    raw = world.partner.pgp_mime_encrypted(inner, [world.gw_fpr])

    opened = open_pgp(raw, backend, [world.gw], world.certs)

    assert opened.content == ENTITY
    assert opened.encrypted and opened.signed and opened.signature_valid
    assert opened.signer_fingerprint == world.curve


@pytest.mark.parametrize("signer", ["rsa", "curve"])
def test_open_pgp_mime_signed(world: World, backend: PgpBackend, signer: str) -> None:
    fpr = _signer_of(signer, world)
    raw = world.partner.pgp_mime_signed(ENTITY, fpr)

    opened = open_pgp(raw, backend, [], world.certs)

    assert opened.kind is PgpKind.MIME_SIGNED
    assert opened.content == ENTITY
    assert not opened.encrypted and opened.recipient_fingerprint is None
    assert opened.signature_valid and opened.signer_fingerprint == fpr
    assert opened.signer_emails
    # Stored with LF line endings on the way: canonicalisation restores what was signed.
    assert open_pgp(raw.replace(b"\r\n", b"\n"), backend, [], world.certs).signature_valid


def test_open_pgp_mime_signed_tampered(world: World, backend: PgpBackend) -> None:
    raw = world.partner.pgp_mime_signed(ENTITY, world.rsa)
    tampered = raw.replace(b"Kind A.", b"Kind B.", 1)
    assert tampered != raw
    opened = open_pgp(tampered, backend, [], world.certs)
    assert opened.signed and not opened.signature_valid
    assert opened.reason == REASON_BAD_SIGNATURE
    assert opened.signer_fingerprint is None and opened.signer_emails == ()
    assert opened.signer_key_id == world.rsa[-16:]


def test_open_pgp_mime_signed_by_unknown_key(world: World, backend: PgpBackend) -> None:
    opened = open_pgp(world.partner.pgp_mime_signed(ENTITY, world.stranger), backend, [],
                      world.certs)
    assert opened.signed and not opened.signature_valid
    assert opened.reason == f"unknown signer key {world.stranger[-16:]}"


# --- inline PGP from the partner ---------------------------------------------------------------


def test_open_inline_encrypted_and_signed(world: World, backend: PgpBackend) -> None:
    raw = world.partner.inline_encrypted(TEXT, [world.gw_fpr], signer=world.rsa)
    opened = open_pgp(raw, backend, [world.gw], world.certs)
    assert opened.kind is PgpKind.INLINE_ENCRYPTED and opened.inline
    assert _text_of(opened.content) == canonicalize(TEXT)
    assert _parse(opened.content).get_content_charset() == "utf-8"
    assert opened.encrypted and opened.signature_valid and opened.signer_fingerprint == world.rsa
    assert not opened.unprotected_text_dropped


def test_inline_text_around_the_block_is_not_delivered(world: World,
                                                       backend: PgpBackend) -> None:
    armored = world.partner.encrypt(TEXT, [world.gw_fpr], signer=world.curve)
    body = b"Bitte sofort ueberweisen!\n\n" + armored + b"\n-- \nFooter\n"
    raw = mail_message("text/plain; charset=us-ascii", canonicalize(body))
    opened = open_pgp(raw, backend, [world.gw], world.certs)
    assert opened.unprotected_text_dropped
    text = _text_of(opened.content)
    assert text == canonicalize(TEXT) and b"ueberweisen" not in text


def test_open_inline_in_multipart_keeps_the_attachment(world: World,
                                                       backend: PgpBackend) -> None:
    armored = world.partner.encrypt(TEXT, [world.gw_fpr])
    raw = mail_message('multipart/mixed; boundary="m"', canonicalize(
        b"--m\nContent-Type: text/plain; charset=us-ascii\n\n" + armored +
        b"\n--m\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
        b"filename=bericht.pgp\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--m--\n"))
    opened = open_pgp(raw, backend, [world.gw], world.certs)
    msg = _parse(opened.content)
    assert msg.get_content_type() == "multipart/mixed"
    assert "From" not in msg and "Subject" not in msg  # only the entity; headers are outside
    _, (text, attachment) = _parts(opened.content)
    assert text.get_payload(decode=True) == canonicalize(TEXT)
    assert attachment.get_filename() == "bericht.pgp"
    assert attachment.get_payload(decode=True) == b"\x00\x01\x02\x03"


def test_open_inline_cleartext_signed(world: World, backend: PgpBackend) -> None:
    raw = world.partner.inline_clearsigned(TEXT, world.curve)
    opened = open_pgp(raw, backend, [], world.certs)
    assert opened.kind is PgpKind.INLINE_SIGNED and not opened.encrypted
    assert opened.signature_valid and opened.signer_fingerprint == world.curve
    assert opened.signer_emails == ("eb@beratung.example",)
    assert _text_of(opened.content) == canonicalize(TEXT)

    tampered = open_pgp(raw.replace(b"Kind A", b"Kind B"), backend, [], world.certs)
    assert tampered.signed and not tampered.signature_valid
    assert tampered.reason == REASON_BAD_SIGNATURE


# --- what goes wrong ---------------------------------------------------------------------------


def _pgp_mime(body_parts: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(f"--b\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
                    for ctype, data in body_parts) + b"--b--\r\n"
    return mail_message('multipart/encrypted; protocol="application/pgp-encrypted"; '
                        'boundary="b"', body)


def test_garbage_in_multipart_encrypted(world: World, backend: PgpBackend) -> None:
    raw = _pgp_mime([("application/pgp-encrypted", b"Version: 1"),
                     ("application/octet-stream", b"das ist kein OpenPGP")])
    with pytest.raises(PgpMalformed):
        open_pgp(raw, backend, [world.gw], world.certs)


def test_multipart_encrypted_with_wrong_structure(world: World, backend: PgpBackend) -> None:
    armored = world.partner.encrypt(TEXT, [world.gw_fpr])
    for parts in ([("application/octet-stream", armored)],
                  [("text/plain", b"Version: 1"), ("application/octet-stream", armored)]):
        with pytest.raises(PgpMalformed):
            open_pgp(_pgp_mime(parts), backend, [world.gw], world.certs)


def test_failures_are_uniform(world: World, backend: PgpBackend) -> None:
    p = world.partner
    not_ours = p.pgp_mime_encrypted(ENTITY, [world.stranger], signer=world.rsa)
    armored = p.encrypt(ENTITY, [world.gw_fpr], signer=world.rsa)
    lines = armored.split(b"\n")
    middle = len(lines) // 2
    lines[middle] = lines[middle][:10] + (b"A" if lines[middle][10:11] != b"A" else b"B") + \
        lines[middle][11:]
    flipped = _pgp_mime([("application/pgp-encrypted", b"Version: 1"),
                         ("application/octet-stream", b"\n".join(lines))])
    truncated = _pgp_mime([("application/pgp-encrypted", b"Version: 1"),
                           ("application/octet-stream", armored[: len(armored) // 2])])
    inline_not_ours = p.inline_encrypted(TEXT, [world.stranger])
    messages = {"not ours": not_ours, "flipped": flipped, "truncated": truncated,
                "inline not ours": inline_not_ours}
    for name, raw in messages.items():
        with pytest.raises(PgpError, match=FAILED) as info:
            open_pgp(raw, backend, [world.gw], world.certs)
        assert type(info.value) is PgpError, name


def test_no_mdc_is_refused(world: World, backend: PgpBackend) -> None:
    armored = world.partner.encrypt(ENTITY, [world.gw_fpr], extra=["--rfc2440"])
    raw = _pgp_mime([("application/pgp-encrypted", b"Version: 1"),
                     ("application/octet-stream", armored)])
    with pytest.raises(PgpNoIntegrity):
        open_pgp(raw, backend, [world.gw], world.certs)


def test_malformed_inputs(world: World, backend: PgpBackend) -> None:
    signed = world.partner.pgp_mime_signed(ENTITY, world.rsa)
    no_close = signed[: signed.rindex(b"--\r\n")]  # "--b--" cut to "--b"
    no_last_line = signed[: signed.rindex(b"\r\n--")]  # closing delimiter line gone
    two_blocks = mail_message("text/plain", canonicalize(
        world.partner.encrypt(TEXT, [world.gw_fpr]) * 2))
    for raw in (mail_message("text/plain", b"Hallo\r\n"), no_close, no_last_line,
                two_blocks):
        with pytest.raises(PgpMalformed):
            open_pgp(raw, backend, [world.gw], world.certs)


# --- what the gateway sends --------------------------------------------------------------------


def _parts(raw: bytes) -> tuple[Message, list[Message]]:
    msg = _parse(raw)
    payload = msg.get_payload()
    assert isinstance(payload, list)
    parts = [p for p in payload if isinstance(p, Message)]
    assert len(parts) == len(payload)
    return msg, parts


def test_seal_pgp_mime_decrypts_with_gpg(world: World, backend: PgpBackend) -> None:
    sealed = seal_pgp_mime(ENTITY, backend, world.certs, world.gw)

    assert b"\n" not in sealed.replace(b"\r\n", b"")  # CRLF only
    msg, (version, payload) = _parts(sealed)
    assert msg.get_content_type() == "multipart/encrypted"
    assert msg.get_param("protocol") == "application/pgp-encrypted"
    assert version.get_content_type() == "application/pgp-encrypted"
    assert str(version.get_payload()).strip() == "Version: 1"
    assert payload.get_content_type() == "application/octet-stream"
    armored = payload.get_payload(decode=True)
    assert isinstance(armored, bytes) and armored.startswith(b"-----BEGIN PGP MESSAGE-----")

    outcome = world.partner.decrypt(armored)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == ENTITY
    assert outcome.has("GOODSIG") and outcome.has("GOODMDC")
    validsig = outcome.args("VALIDSIG")
    assert validsig is not None and validsig[9] == world.gw_fpr

    # And what we sealed for ourselves we can open again, with the envelope around it.
    ours = seal_pgp_mime(ENTITY, backend, [public_part(world.gw)], world.gw)
    opened = open_pgp(mail_message(_content_type(ours), ours.split(b"\r\n\r\n", 1)[1]),
                      backend, [world.gw], [public_part(world.gw)])
    assert opened.content == ENTITY and opened.signature_valid


def test_seal_without_signature(world: World, backend: PgpBackend) -> None:
    _, (_, payload) = _parts(seal_pgp_mime(ENTITY, backend, world.certs[:1], None))
    armored = payload.get_payload(decode=True)
    assert isinstance(armored, bytes)
    outcome = world.partner.decrypt(armored)
    assert outcome.stdout == ENTITY and not outcome.has("NEWSIG")


def test_sign_pgp_mime_verifies_with_gpg(world: World, backend: PgpBackend) -> None:
    signed = sign_pgp_mime(ENTITY, backend, world.gw)

    msg, (_, signature_part) = _parts(signed)
    assert msg.get_content_type() == "multipart/signed"
    assert msg.get_param("protocol") == "application/pgp-signature"
    assert signature_part.get_content_type() == "application/pgp-signature"
    signature = signature_part.get_payload(decode=True)
    assert isinstance(signature, bytes)
    # The signed part exactly as a receiving client sees it: between the first two
    # delimiters, the CRLF before a delimiter belonging to the delimiter (RFC 2046).
    boundary = msg.get_boundary()
    assert boundary is not None
    body = signed.split(b"\r\n\r\n", 1)[1]
    first = body.split(b"--" + boundary.encode() + b"\r\n", 1)[1]
    signed_part = first.split(b"\r\n--" + boundary.encode() + b"\r\n", 1)[0]
    assert signed_part == ENTITY

    outcome = world.partner.verify_detached(signed_part, signature)
    assert outcome.returncode == 0 and outcome.has("GOODSIG"), outcome.stderr
    validsig = outcome.args("VALIDSIG")
    assert validsig is not None and validsig[9] == world.gw_fpr
    hash_names = {"8": "pgp-sha256", "9": "pgp-sha384", "10": "pgp-sha512"}
    assert msg.get_param("micalg") == hash_names[validsig[7]]  # the hash really used
    assert world.partner.verify_detached(signed_part + b"x", signature).has("BADSIG")

    opened = open_pgp(signed, backend, [], [public_part(world.gw)])
    assert opened.signature_valid and opened.content == ENTITY
    assert opened.signer_emails == ("ja@xgate.example",)


def _content_type(entity: bytes) -> str:
    head = entity.split(b"\r\n\r\n", 1)[0].decode()
    return " ".join(head.split("Content-Type:", 1)[1].split())
