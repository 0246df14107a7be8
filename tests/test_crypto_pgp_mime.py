"""PGP/MIME (RFC 3156) and inline PGP against the real gpg CLI as the partner's mail client.

Partner mail is built as a client builds it: gpg's armored output wrapped in
multipart/encrypted, a detached signature in multipart/signed, or an armored block as a
text/plain body. What the gateway produces is taken apart with the email package and checked
with ``gpg --decrypt`` / ``gpg --verify``. Every test that involves a backend runs on both.
"""

from __future__ import annotations

import base64
import quopri
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value

import pytest

import crypto.canonical
import crypto.pgp_mime
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


def _reference_kind(raw: bytes) -> PgpKind | None:
    """What ``classify`` answered when it parsed the whole message with ``email``."""
    msg = _parse(raw)
    ctype = msg.get_content_type()
    if ctype in ("multipart/encrypted", "multipart/signed"):
        value = msg.get_param("protocol")
        protocol = "" if value is None else str(collapse_rfc2231_value(value)).strip().lower()
        return {("multipart/encrypted", "application/pgp-encrypted"): PgpKind.MIME_ENCRYPTED,
                ("multipart/signed", "application/pgp-signature"): PgpKind.MIME_SIGNED,
                }.get((ctype, protocol))
    return _reference_inline(msg)


def _reference_inline(msg: Message) -> PgpKind | None:
    if msg.is_multipart():
        if msg.get_content_type() not in ("multipart/mixed", "multipart/alternative",
                                           "multipart/related"):
            return None
        for part in msg.get_payload():
            assert isinstance(part, Message)
            found = _reference_inline(part)
            if found:
                return found
        return None
    if (msg.get_content_type() != "text/plain" or str(
            msg.get("Content-Disposition") or "").strip().lower().startswith("attachment")):
        return None
    text = msg.get_payload(decode=True)
    assert isinstance(text, bytes)
    if re.search(rb"^-----BEGIN PGP MESSAGE-----", text, re.MULTILINE):
        return PgpKind.INLINE_ENCRYPTED
    if re.search(rb"^-----BEGIN PGP SIGNED MESSAGE-----", text, re.MULTILINE):
        return PgpKind.INLINE_SIGNED
    return None


_EDGE_CASES = [
    b"",
    b"\r\n",
    b"-----BEGIN PGP MESSAGE-----\r\n",  # a header-less body line: no header block
    b"Content-Type: text/plain\r\n\r\nx\n-----BEGIN PGP SIGNED MESSAGE-----\r\n",
    b"Content-Type: text/plain\r\n\r\nx\r-----BEGIN PGP MESSAGE-----\r\n",  # CR: no line start
    b"Content-Type: text/plain\nX: 1\n-----BEGIN PGP MESSAGE-----\n",  # no blank line
    b"Content-Type: text/plain\r\nX: 1\r\nFrom me\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n",
    b"From me\r\nContent-Type: application/pdf\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n",
    b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\xc3\xa4.asc\r\n"
    b"\r\n-----BEGIN PGP MESSAGE-----\r\n",  # 8-bit field: an email.header.Header
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"-----BEGIN PGP MESSAGE-----\n").replace(b"\n", b"\r\n"),
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"x=\r\n-----BEGIN PGP MESSAGE-----\r\n",  # a soft line break: not at a line start
    b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"\r\n\r\n',
    b"Content-Type: multipart/signed; protocol*=us-ascii''application%2Fpgp-signature;"
    b" boundary=b\r\n\r\n",
    b'Content-Type: multipart/signed;\r\n protocol="application/pkcs7-signature"\r\n\r\n',
    b"Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n--b\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n",  # closed before it opened: not a multipart
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b--\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n",  # consecutive delimiters open one part
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b \t\r\n\r\n"
    b"-----BEGIN PGP SIGNED MESSAGE-----",  # padding, and no closing delimiter
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--bb\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n--b--\r\n",  # --bb is not a delimiter of b
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx--b\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n--b--\r\n",  # --b within a line
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n",  # armor in the epilogue
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
    b"--b\r\n\r\nx\r\n--b--\r\n",  # armor in the preamble
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
    b"Content-Type: multipart/alternative; boundary=o\r\n\r\n--o\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n--o--\r\n--o--\r\n",  # inner = outer boundary
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
    b"Content-Type: multipart/related; boundary=i\r\n\r\n--i\r\n"
    b"Content-Type: text/html\r\n\r\nx\r\n--o\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
    b"--i--\r\n--o--\r\n",  # an outer delimiter ends the inner multipart
    b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: text/plain\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n--m--\r\n",  # forwarded
    b"Content-Type: multipart/mixed;\r\n boundary=\"a\r\n b\"\r\n\r\n--a\r\n b\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n",  # a boundary folded over two lines
    b"Content-Type: multipart/mixed; boundary*=utf-8''%C3%A4\r\n\r\n--\xc3\xa4\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n",
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\rFrom x\rContent-Type: text/plain\r"
    b"From y\r\r-----BEGIN PGP MESSAGE-----\r--b--",
]


def _random_message(rng: random.Random, depth: int = 0) -> bytes:
    """A MIME entity from pieces that have tripped parsers: odd line ends, missing blank
    lines, stray and consecutive delimiters, envelope lines, encoded armor."""
    eol = rng.choice([b"\r\n"] * 5 + [b"\n", b"\r"])
    fields: list[bytes] = []
    if rng.random() < 0.1:
        fields.append(b"From someone")
    boundary = rng.choice(["b", "bb", "o"])
    types = ["text/plain", "text/html", "application/octet-stream", "message/rfc822", "text"]
    if depth < 3:
        types += [f"multipart/{sub}; boundary={boundary}"
                  for sub in ("mixed", "alternative", "related", "digest", "encrypted")] * 2
        types += [f'multipart/signed; protocol="application/pgp-signature"; boundary={boundary}',
                  f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary={boundary}']
    ctype = rng.choice(types)
    if rng.random() < 0.9:
        fields.append(f"Content-Type: {ctype}".encode())
    cte = rng.choice(["", "", "base64", "quoted-printable", "7bit"])
    if cte:
        fields.append(f"Content-Transfer-Encoding: {cte}".encode())
    if rng.random() < 0.15:
        fields.append(b"Content-Disposition: attachment")
    if rng.random() < 0.1:
        fields.append(b"From someone")
    head = eol.join(fields) + eol + (eol if rng.random() < 0.9 else b"")
    if ctype.startswith("multipart/") and "boundary" in ctype:
        body = b""
        for _ in range(rng.randint(0, 3)):
            body += b"--" + boundary.encode() + rng.choice([b"", b"", b"--", b" "]) + eol
            body += _random_message(rng, depth + 1) + eol
        if rng.random() < 0.8:
            body += b"--" + boundary.encode() + b"--" + eol
    elif ctype == "message/rfc822" and depth < 3:
        body = _random_message(rng, depth + 1)
    else:
        body = eol.join(rng.choice([b"-----BEGIN PGP MESSAGE-----", b"x", b"",
                                    b"-----BEGIN PGP SIGNED MESSAGE-----", b"--b", b"--o--"])
                        for _ in range(rng.randint(0, 4)))
        if cte == "base64":
            body = base64.encodebytes(body).replace(b"\n", eol)
        elif cte == "quoted-printable":
            body = quopri.encodestring(body)
    raw = bytearray(head + body)
    for _ in range(rng.randint(0, 2) if depth == 0 else 0):
        at = rng.randint(0, len(raw))
        raw[at:at] = rng.choice([b"\r", b"\n", b"--", b" ", b"From ", b"--b\r\n", b"\xff"])
    return bytes(raw)


def test_classify_answers_as_a_full_parse() -> None:
    """Classification reads header blocks and finds parts by their delimiters instead of
    parsing the whole message; every answer must still be the full parse's."""
    rng = random.Random(3156)
    corpus = _EDGE_CASES + [_random_message(rng) for _ in range(3000)]
    for raw in corpus:
        assert classify(raw) is _reference_kind(raw), raw


def test_an_8bit_content_disposition_does_not_break_classify() -> None:
    raw = (b"Content-Type: text/plain\r\nContent-Disposition: inline; filename=\xc3\xa4.txt"
           b"\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n")
    assert classify(raw) is PgpKind.INLINE_ENCRYPTED


def test_classify_does_not_parse_large_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(raw: bytes, **kwargs: object) -> Message:
        raise AssertionError("a full parse")

    monkeypatch.setattr(crypto.pgp_mime, "message_from_bytes", refuse)
    attachment = base64.encodebytes(bytes(range(256)) * 8192).replace(b"\n", b"\r\n")
    mixed = mail_message('multipart/mixed; boundary="m"',
                         b"--m\r\nContent-Type: text/plain\r\n\r\nHallo\r\n--m\r\n"
                         b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64"
                         b"\r\n\r\n" + attachment + b"--m--\r\n")
    encrypted = _pgp_mime([("application/pgp-encrypted", b"Version: 1"),
                           ("application/octet-stream", b"-----BEGIN PGP MESSAGE-----\r\n\r\n"
                            + attachment + b"-----END PGP MESSAGE-----")])
    assert classify(mixed) is None
    assert classify(encrypted) is PgpKind.MIME_ENCRYPTED
    assert classify(mail_message("application/pdf", attachment)) is None


def test_canonicalize_is_the_shared_one() -> None:
    assert canonicalize is crypto.canonical.canonicalize
    assert canonicalize(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd"


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


def test_open_pgp_mime_encrypted_without_a_full_parse(world: World, backend: PgpBackend,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    raw = world.partner.pgp_mime_encrypted(ENTITY, [world.gw_fpr], signer=world.rsa)

    def refuse(raw: bytes, **kwargs: object) -> Message:
        raise AssertionError("a full parse")

    monkeypatch.setattr(crypto.pgp_mime, "message_from_bytes", refuse)
    opened = open_pgp(raw, backend, [world.gw], world.certs)
    assert opened.content == ENTITY and opened.signature_valid


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
