"""OpenPGP at the message level: PGP/MIME (RFC 3156) and inline PGP, in and out.

Everything here works on one MIME entity (Content-* headers and body) or a whole message;
splicing the envelope headers (From, To, Subject, Date, Message-ID) back around an entity is
the caller's job. Output entities use CRLF line endings.

Inbound, a multipart/signed part is verified over its exact bytes as they stand between the
boundaries, with line endings canonicalised to CRLF where it is text (RFC 3156 section 5;
a body in Content-Transfer-Encoding binary keeps its bytes, see crypto.canonical). The
decrypted entity is treated the same way. Inline PGP yields
a new text/plain entity holding only the decrypted or verified text: unprotected text around
the armored block is not delivered as if it were protected (``unprotected_text_dropped`` says
there was some). Outbound, entities must already survive transport unchanged (7-bit, or
base64/quoted-printable bodies), as for S/MIME: a relay re-encoding a signed part breaks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from enum import Enum
from io import BytesIO

from crypto.canonical import base64_lines, canonicalize_entity, mime_boundary
from crypto.canonical import canonicalize as canonicalize
from crypto.mime_raw import RawEntity, body_parts, entity_at, find_dashed
from crypto.pgp_backend import PgpBackend as PgpBackend
from crypto.pgp_backend import PgpError as PgpError
from crypto.pgp_backend import PgpMalformed as PgpMalformed
from crypto.pgp_backend import PgpNoIntegrity as PgpNoIntegrity
from crypto.pgp_backend import PgpResult, PgpSignatureResult, signature_hash_algorithm
from crypto.pgp_keys import emails_for

_CRLF = b"\r\n"
_BEGIN_MESSAGE = b"-----BEGIN PGP MESSAGE-----"
_END_MESSAGE = b"-----END PGP MESSAGE-----"
_BEGIN_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
_END_SIGNATURE = b"-----END PGP SIGNATURE-----"
_CONTAINERS = frozenset({"multipart/mixed", "multipart/alternative", "multipart/related"})
_PGP_MIME_TYPES = frozenset({"multipart/encrypted", "multipart/signed"})
_ASCII = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968"})


class PgpKind(Enum):
    MIME_ENCRYPTED = "pgp/mime encrypted"
    MIME_SIGNED = "pgp/mime signed"
    INLINE_ENCRYPTED = "inline encrypted"
    INLINE_SIGNED = "inline signed"


@dataclass(frozen=True)
class PgpOpened:
    """The entity to deliver and what the OpenPGP layer established about it."""

    content: bytes = field(repr=False)  # a MIME entity, CRLF line endings where text
    kind: PgpKind
    encrypted: bool
    cipher: str | None  # None where the engine cannot tell (see crypto.pgp_sequoia)
    recipient_fingerprint: str | None  # our key that decrypted it
    signed: bool
    signature_valid: bool
    signer_fingerprint: str | None  # primary fingerprint, only when valid
    signer_key_id: str | None
    signer_emails: tuple[str, ...]  # from the verifying certificate's user ids
    reason: str | None  # why a present signature is not valid
    engine: str
    unprotected_text_dropped: bool = False  # inline: text outside the armored block

    @property
    def inline(self) -> bool:
        return self.kind in (PgpKind.INLINE_ENCRYPTED, PgpKind.INLINE_SIGNED)


def classify(raw: bytes) -> PgpKind | None:
    """Which kind of OpenPGP message ``raw`` (a message or an entity) is, if any.

    Cheap enough to call on every message, and twice: PGP/MIME is told from the top-level
    header fields alone, and for inline PGP only the text/plain parts are decoded and
    searched; other parts are skipped by their boundaries, never parsed. The answer is the
    one a full parse with ``email`` (compat32) would give.
    """
    return _kind(raw, entity_at(raw, 0, len(raw)))


def open_pgp(raw: bytes, backend: PgpBackend, secret_keys: Sequence[bytes],
             verify_certs: Sequence[bytes]) -> PgpOpened:
    """Decrypt and/or verify an OpenPGP message; the inner entity and the facts.

    Errors as the backend's: ``PgpMalformed`` (not OpenPGP, or a broken PGP/MIME structure),
    ``PgpNoIntegrity``, and the uniform ``PgpError("decryption failed")``. A bad signature is
    not an error; the result says so.

    It classifies ``raw`` itself, as cheaply as ``classify``, and parses it fully at most
    once (inline PGP only; PGP/MIME is taken apart on the raw bytes).
    """
    top = entity_at(raw, 0, len(raw))
    kind = _kind(raw, top)
    if kind is PgpKind.MIME_ENCRYPTED:
        return _open_mime_encrypted(raw, top, backend, secret_keys, verify_certs)
    if kind is PgpKind.MIME_SIGNED:
        content, checked = _open_mime_signed(raw, backend, verify_certs)
        return _opened(content, kind, None, _Sig.of(checked), verify_certs)
    if kind is None:
        raise PgpMalformed("not an OpenPGP message")
    return _open_inline(_parse(raw), kind, backend, secret_keys, verify_certs)


def seal_pgp_mime(entity: bytes, backend: PgpBackend, recipients: Sequence[bytes],
                  signer: bytes | None) -> bytes:
    """An RFC 3156 multipart/encrypted entity holding ``entity``, signed inside if ``signer``."""
    armored = canonicalize(backend.encrypt(canonicalize(entity), recipients, signer, armor=True))
    boundary = mime_boundary(armored, b"----xgate-pgp-")
    return b"".join([
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n',
        b' boundary="' + boundary + b'"\r\n',
        b"\r\n",
        b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n",
        b"--" + boundary + b"\r\n",
        b"Content-Type: application/pgp-encrypted\r\n",
        b"Content-Description: PGP/MIME version identification\r\n",
        b"\r\n",
        b"Version: 1\r\n",
        b"\r\n--" + boundary + b"\r\n",
        b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n',
        b"Content-Description: OpenPGP encrypted message\r\n",
        b'Content-Disposition: inline; filename="encrypted.asc"\r\n',
        b"\r\n",
        armored.rstrip(_CRLF) + b"\r\n",
        b"\r\n--" + boundary + b"--\r\n",
    ])


def seal_pgp_inline(entity: bytes, backend: PgpBackend, recipients: Sequence[bytes],
                    signer: bytes | None) -> bytes | None:
    """A text/plain entity whose body is the armored, encrypted (and signed) text.

    Only for a single text/plain part: inline PGP cannot carry structure or attachments, so
    for anything else this returns None and the caller sends PGP/MIME. The charset stays on
    the part, so the recipient's client reads the decrypted bytes as the sender wrote them.
    """
    part = message_from_bytes(entity, policy=compat32)
    if part.is_multipart() or part.get_content_type() != "text/plain":
        return None
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return None
    charset = str(part.get_param("charset", "us-ascii") or "us-ascii")
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,40}", charset):
        charset = "utf-8"
    armored = canonicalize(backend.encrypt(canonicalize(text), recipients, signer, armor=True))
    return (f"Content-Type: text/plain; charset={charset}\r\n".encode()
            + b"Content-Transfer-Encoding: 7bit\r\n\r\n" + armored.rstrip(_CRLF) + b"\r\n")


def sign_pgp_mime(entity: bytes, backend: PgpBackend, signer: bytes) -> bytes:
    """An RFC 3156 multipart/signed entity: ``entity`` (CRLF) and a detached signature.

    ``micalg`` names the hash the signature really uses. The caller must make sure the entity
    is transport-safe (7-bit), as for S/MIME.
    """
    content = canonicalize(entity)
    signature = canonicalize(backend.sign_detached(content, signer))
    micalg = "pgp-" + signature_hash_algorithm(signature)
    boundary = mime_boundary(content + signature, b"----xgate-pgp-")
    # RFC 2046: the CRLF before a delimiter belongs to the delimiter, so the signed part is
    # exactly ``content``, which therefore gets an extra CRLF after it.
    return b"".join([
        b"Content-Type: multipart/signed; micalg=" + micalg.encode() + b";\r\n",
        b' protocol="application/pgp-signature"; boundary="' + boundary + b'"\r\n',
        b"\r\n",
        b"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n",
        b"--" + boundary + b"\r\n",
        content,
        b"\r\n--" + boundary + b"\r\n",
        b'Content-Type: application/pgp-signature; name="signature.asc"\r\n',
        b"Content-Description: OpenPGP digital signature\r\n",
        b'Content-Disposition: attachment; filename="signature.asc"\r\n',
        b"\r\n",
        signature.rstrip(_CRLF) + b"\r\n",
        b"\r\n--" + boundary + b"--\r\n",
    ])


# --- classification ---------------------------------------------------------------------------
#
# ``classify`` and ``open_pgp`` locate entities in the raw bytes instead of parsing the whole
# message: header blocks are parsed by ``email`` (compat32) on their own, and body parts are
# found by their boundary lines, as ``email.feedparser`` finds them (crypto.mime_raw). The
# decisions are the ones ``_mime_kind`` and ``_inline_part`` make on a fully parsed message.


def _parse(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=compat32)


def _kind(raw: bytes, top: RawEntity) -> PgpKind | None:
    if top.content_type in _PGP_MIME_TYPES:
        return _mime_kind(top)
    return _inline_kind(raw, top, strip_eol=False)


def _mime_kind(entity: RawEntity) -> PgpKind | None:
    """PGP/MIME or not, from the top-level header fields alone."""
    ctype = entity.content_type
    if ctype == "multipart/encrypted":
        protocol = _param(entity.headers, "protocol")
        return PgpKind.MIME_ENCRYPTED if protocol == "application/pgp-encrypted" else None
    if ctype == "multipart/signed":
        protocol = _param(entity.headers, "protocol")
        return PgpKind.MIME_SIGNED if protocol == "application/pgp-signature" else None
    return None


def _inline_kind(data: bytes, entity: RawEntity, *, strip_eol: bool) -> PgpKind | None:
    """``_inline_part`` on the raw bytes: which armored block the first body text part in
    mixed, alternative and related containers carries, if any."""
    ctype = entity.content_type
    if ctype in _CONTAINERS:
        regions = body_parts(data, entity)
        for start, end in regions or ():
            found = _inline_kind(data, entity_at(data, start, end), strip_eol=True)
            if found:
                return found
        return None
    if ctype != "text/plain" or _is_attachment(entity.headers):
        return None
    return _armor_kind(entity.decoded(data, strip_eol=strip_eol))


def _param(msg: Message, name: str) -> str:
    value = msg.get_param(name)
    if value is None:
        return ""
    return str(collapse_rfc2231_value(value)).strip().lower()


def _is_attachment(msg: Message) -> bool:
    # str(): with raw 8-bit bytes in it (a UTF-8 file name) the field is an email.header.Header
    return str(msg.get("Content-Disposition") or "").strip().lower().startswith("attachment")


def _armor_kind(text: bytes) -> PgpKind | None:
    """Which armor header line ``text`` has at a line start (after LF, as re.MULTILINE)."""
    if _at_line_start(text, _BEGIN_MESSAGE):
        return PgpKind.INLINE_ENCRYPTED
    if _at_line_start(text, _BEGIN_SIGNED):
        return PgpKind.INLINE_SIGNED
    return None


def _at_line_start(text: bytes, marker: bytes) -> bool:
    return text.startswith(marker) or b"\n" + marker in text


def _inline_part(msg: Message) -> tuple[Message, PgpKind] | None:
    """The first body text part carrying an armored block, looking only into mixed,
    alternative and related containers (a forwarded message is not ours to open)."""
    if msg.is_multipart():
        if msg.get_content_type() not in _CONTAINERS:
            return None
        for part in msg.get_payload():
            assert isinstance(part, Message)
            found = _inline_part(part)
            if found:
                return found
        return None
    if msg.get_content_type() != "text/plain" or _is_attachment(msg):
        return None
    kind = _armor_kind(_payload(msg))
    return (msg, kind) if kind else None


def _payload(msg: Message) -> bytes:
    data = msg.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# --- opening ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sig:
    signed: bool = False
    valid: bool = False
    fingerprint: str | None = None
    key_id: str | None = None
    reason: str | None = None
    engine: str = ""

    @classmethod
    def of(cls, result: PgpResult | PgpSignatureResult) -> _Sig:
        if isinstance(result, PgpResult):
            return cls(result.signed, result.signature_valid, result.signer_fingerprint,
                       result.signer_key_id, result.signature_reason, result.engine)
        return cls(result.signed, result.valid, result.signer_fingerprint,
                   result.signer_key_id, result.reason, result.engine)


def _open_mime_encrypted(raw: bytes, top: RawEntity, backend: PgpBackend,
                         secret_keys: Sequence[bytes],
                         verify_certs: Sequence[bytes]) -> PgpOpened:
    regions = body_parts(raw, top)
    if regions is None or len(regions) != 2:
        raise PgpMalformed("multipart/encrypted must have exactly two parts (RFC 3156)")
    control, payload = (entity_at(raw, start, end) for start, end in regions)
    if (control.content_type != "application/pgp-encrypted"
            or payload.content_type != "application/octet-stream"):
        raise PgpMalformed("multipart/encrypted parts are not application/pgp-encrypted and "
                           "application/octet-stream (RFC 3156)")
    result = backend.decrypt(payload.decoded(raw, strip_eol=True), secret_keys, verify_certs)
    inner = canonicalize_entity(result.plaintext)
    sig = _Sig.of(result)
    if _mime_kind(entity_at(inner, 0, len(inner))) is PgpKind.MIME_SIGNED:
        # Signed, then encrypted as two MIME layers (RFC 3156 section 6.1).
        inner, checked = _open_mime_signed(inner, backend, verify_certs)
        inner_sig = _Sig.of(checked)
        # A signature in the OpenPGP layer as well must not be hidden if it failed.
        sig = sig if sig.signed and not sig.valid else inner_sig
    return _opened(inner, PgpKind.MIME_ENCRYPTED, result, sig, verify_certs)


def _open_mime_signed(entity: bytes, backend: PgpBackend,
                      verify_certs: Sequence[bytes]) -> tuple[bytes, PgpSignatureResult]:
    header_block, body = _split_header_block(canonicalize_entity(entity))
    boundary = _parse(header_block + b"\r\n\r\n").get_boundary()
    if not boundary:
        raise PgpMalformed("multipart/signed without a boundary")
    parts = _raw_parts(body, boundary.encode("ascii", "replace"))
    if len(parts) != 2:
        raise PgpMalformed("multipart/signed must have exactly two parts (RFC 3156)")
    signed, signature_part = parts
    sig_msg = _parse(signature_part)
    if sig_msg.get_content_type() != "application/pgp-signature":
        raise PgpMalformed("the second part of multipart/signed is not "
                           "application/pgp-signature")
    return signed, backend.verify(signed, _payload(sig_msg), verify_certs)


def _open_inline(msg: Message, kind: PgpKind, backend: PgpBackend,
                 secret_keys: Sequence[bytes], verify_certs: Sequence[bytes]) -> PgpOpened:
    found = _inline_part(msg)
    assert found is not None
    part = found[0]
    block, outside = _armored_block(_payload(part), kind)
    decrypted: PgpResult | None = None
    if kind is PgpKind.INLINE_ENCRYPTED:
        decrypted = backend.decrypt(block, secret_keys, verify_certs)
        text, sig = decrypted.plaintext, _Sig.of(decrypted)
    else:
        checked = backend.verify(block, None, verify_certs)
        text, sig = checked.content, _Sig.of(checked)
    charset = _text_charset(text, _param(part, "charset"))
    if part is msg:
        entity = _text_entity(text, charset)
    else:
        entity = _replace_part(msg, part, text, charset)
    opened = _opened(entity, kind, decrypted, sig, verify_certs)
    return replace(opened, unprotected_text_dropped=outside)


def _opened(content: bytes, kind: PgpKind, decrypted: PgpResult | None, sig: _Sig,
            verify_certs: Sequence[bytes]) -> PgpOpened:
    emails = emails_for(sig.fingerprint, verify_certs) if sig.valid and sig.fingerprint else ()
    return PgpOpened(
        content=content, kind=kind, encrypted=decrypted is not None,
        cipher=decrypted.cipher if decrypted else None,
        recipient_fingerprint=decrypted.recipient_fingerprint if decrypted else None,
        signed=sig.signed, signature_valid=sig.valid,
        signer_fingerprint=sig.fingerprint if sig.valid else None,
        signer_key_id=sig.key_id, signer_emails=emails,
        reason=None if sig.valid or not sig.signed else sig.reason,
        engine=decrypted.engine if decrypted else sig.engine,
    )


def _armored_block(text: bytes, kind: PgpKind) -> tuple[bytes, bool]:
    """The one armored block of ``kind`` in ``text``, and whether other text surrounds it."""
    begin, end = ((_BEGIN_MESSAGE, _END_MESSAGE) if kind is PgpKind.INLINE_ENCRYPTED
                  else (_BEGIN_SIGNED, _END_SIGNATURE))
    lines = canonicalize(text).split(_CRLF)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == begin]
    if len(starts) != 1:
        raise PgpMalformed("inline OpenPGP text must hold exactly one armored block")
    start = starts[0]
    stop = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() == end),
                len(lines) - 1)  # no END line: truncated, and the engine will say so
    outside = any(line.strip() for line in lines[:start] + lines[stop + 1:])
    return b"\n".join(lines[start : stop + 1]) + b"\n", outside


def _text_charset(text: bytes, declared: str) -> str:
    # The declared charset describes the armored (ASCII) text, not what was encrypted; most
    # clients encrypt UTF-8. Otherwise trust a non-ASCII declaration, else assume Latin-1.
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return declared if declared and declared not in _ASCII else "iso-8859-1"
    return "utf-8"


def _text_entity(text: bytes, charset: str) -> bytes:
    return (f'Content-Type: text/plain; charset="{charset}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64_lines(
                canonicalize(text))


def _replace_part(msg: Message, part: Message, text: bytes, charset: str) -> bytes:
    """``msg`` as an entity (Content-* headers only) with ``part`` now holding ``text``."""
    for name in ("Content-Transfer-Encoding", "Content-Type"):
        del part[name]
    part["Content-Type"] = f'text/plain; charset="{charset}"'
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64_lines(canonicalize(text)).decode("ascii"))
    for name in {key.lower() for key in msg.keys()}:
        if not name.startswith("content-"):
            del msg[name]
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=compat32.clone(linesep="\r\n")).flatten(msg)
    return out.getvalue()


# --- raw MIME -----------------------------------------------------------------------------------


def _split_header_block(entity: bytes) -> tuple[bytes, bytes]:
    if entity.startswith(_CRLF):
        return b"", entity[2:]
    head, sep, body = entity.partition(b"\r\n\r\n")
    if not sep:
        raise PgpMalformed("no blank line between header and body")
    return head, body


def _raw_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The bytes of each body part between the delimiters (RFC 2046 section 5.1.1).

    ``body`` has CRLF line endings. A delimiter line is the delimiter, optionally ``--``,
    and transport padding (blanks). The CRLF before a delimiter belongs to the delimiter.
    Without the closing delimiter the multipart is incomplete (truncated), and refused.
    """
    delimiter = b"--" + boundary
    closing = delimiter + b"--"
    parts: list[bytes] = []
    current: int | None = None  # where the part being read began
    pos = 0
    while (found := find_dashed(body, delimiter, pos, len(body))) >= 0:
        line_end = body.find(_CRLF, found)
        if line_end < 0:
            line_end = len(body)
        at_line_start = found == 0 or (found >= 2 and body.startswith(_CRLF, found - 2))
        marker = body[found:line_end].rstrip(b" \t")  # padding after a delimiter is allowed
        if not at_line_start or marker not in (delimiter, closing):
            pos = found + 1
            continue
        if current is not None:
            parts.append(body[current : max(current, found - 2)])
        if marker == closing:
            return parts
        current = pos = line_end + 2
    raise PgpMalformed("multipart without its closing delimiter (truncated?)")
