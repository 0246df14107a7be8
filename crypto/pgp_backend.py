"""What every OpenPGP backend agrees on: the interface, results, errors and a pre-flight look.

Keys are passed in explicitly on every call, as armored or binary bytes: the gateway's key
directory in the database is the source of truth, not a keyring. Secret keys are unprotected
transferable secret keys held in memory by the caller.

Both backends (``crypto.pgp_sequoia`` in-process, ``crypto.pgp_gnupg`` over a GnuPG home) must
behave the same; ``inspect_message`` is the part of that behaviour decided *before* either
engine runs, so the refusals it drives (not OpenPGP at all, no integrity protection) cannot
differ between them.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from crypto.errors import CryptoError

# Bound on decrypted content: above the SMTP edge's default message size limit (50 MiB).
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024

# The one message for every decryption failure (wrong key, tampering, truncation, unknown
# recipient): distinct messages would let a sender probe the gateway as an oracle.
DECRYPTION_FAILED = "decryption failed"
NO_INTEGRITY = "no integrity protection (MDC); refused"

# Reasons a signature is not valid; the pipeline's policy reads these, people read them too.
REASON_BAD_SIGNATURE = "bad signature"
REASON_KEY_EXPIRED = "key expired"
REASON_KEY_REVOKED = "key revoked"
REASON_SIGNATURE_EXPIRED = "signature expired"
REASON_NO_SIGNATURE = "no signature"
REASON_SEVERAL_SIGNATURES = "more than one signature; only single signatures are accepted"


def reason_unknown_signer(key_id: str | None) -> str:
    return f"unknown signer key {key_id or '(no issuer)'}"


class PgpError(CryptoError):
    """An OpenPGP operation failed or was refused."""


class PgpNoIntegrity(PgpError):
    """The message has no integrity protection (SED packet, no MDC): the EFAIL vector."""


class PgpMalformed(PgpError):
    """The input is not an OpenPGP message (or not the kind of OpenPGP data expected)."""


class PgpTooLarge(PgpError):
    """The decrypted or verified content exceeds the configured bound (decompression bomb)."""


class PgpKeyError(PgpError):
    """A key handed in by the caller is unusable (unparseable, no secret part, expired, weak)."""


# RFC 4880 9.2 / RFC 9580 9.3 symmetric algorithm ids, named as gpg and Sequoia name them.
CIPHER_NAMES: dict[int, str] = {
    1: "idea", 2: "3des", 3: "cast5", 4: "blowfish", 7: "aes128", 8: "aes192", 9: "aes256",
    10: "twofish", 11: "camellia128", 12: "camellia192", 13: "camellia256",
}


def cipher_name(algo: int | None) -> str | None:
    if algo is None:
        return None
    return CIPHER_NAMES.get(algo, f"unknown-{algo}")


@dataclass(frozen=True)
class StatusLine:
    """One gpg ``[GNUPG:]`` status line (only the GnuPG backend has them)."""

    keyword: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class PgpResult:
    """Outcome of a successful decryption.

    ``signature_valid`` is purely cryptographic validity by a key among the certificates
    passed in; whether the signer is *trusted* for a given sender is the pipeline's decision,
    using ``signer_fingerprint`` (the primary key's fingerprint, upper-case hex).
    Fingerprints and key ids are upper-case hex. ``signature_status``, ``cipher_algo``,
    ``mdc_method``, ``aead_algo`` and ``status_lines`` are gpg's raw facts (None/empty from
    the in-process backend). ``plaintext`` is kept out of ``repr`` so it cannot end up in logs.
    """

    plaintext: bytes = field(repr=False)
    signed: bool
    signature_valid: bool
    signer_fingerprint: str | None  # primary key fingerprint; None unless the signature verified
    signing_key_fingerprint: str | None  # the (sub)key that made the signature
    signer_key_id: str | None  # known even for bad signatures / unknown signers
    signature_status: str | None = None  # gpg: GOODSIG, BADSIG, ERRSIG, ... (the decisive one)
    cipher_algo: int | None = None  # OpenPGP symmetric algorithm id, when the engine reports it
    mdc_method: int | None = None
    aead_algo: int | None = None
    status_lines: tuple[StatusLine, ...] = field(repr=False, default=())
    cipher: str | None = None  # "aes256", ...; None when the engine cannot tell
    recipient_fingerprint: str | None = None  # primary fingerprint of our key that decrypted it
    signature_reason: str | None = None  # why a present signature is not valid
    engine: str = "gnupg"  # which engine produced this result ("gnupg", "sequoia")


@dataclass(frozen=True)
class PgpSignatureResult:
    """Outcome of verifying a detached, inline-signed or cleartext-signed message.

    A bad signature is a result, not an error: ``valid`` is False and ``reason`` says why.
    ``content`` is the signed content (for a detached signature: the data passed in; for a
    cleartext signature: the text with LF line endings and a final newline).
    """

    signed: bool
    valid: bool
    content: bytes = field(repr=False)
    signer_fingerprint: str | None  # primary key fingerprint; None unless valid
    signing_key_fingerprint: str | None
    signer_key_id: str | None
    reason: str | None
    engine: str


class PgpBackend(Protocol):
    """An OpenPGP engine. Every key is passed in; nothing is looked up elsewhere."""

    name: str

    def decrypt(
        self, data: bytes, secret_keys: Sequence[bytes], verify_certs: Sequence[bytes]
    ) -> PgpResult:
        """Decrypt (and verify, if signed) one message.

        Raises ``PgpMalformed`` if ``data`` is not OpenPGP at all, ``PgpNoIntegrity`` for
        messages without MDC, ``PgpTooLarge`` above the output bound, and
        ``PgpError("decryption failed")`` for every other failure.
        """
        ...

    def verify(
        self, data: bytes, signature: bytes | None, certs: Sequence[bytes]
    ) -> PgpSignatureResult:
        """Verify ``signature`` over ``data`` (detached), or the signed message ``data``."""
        ...

    def encrypt(
        self, data: bytes, recipients: Sequence[bytes], signer: bytes | None, *,
        armor: bool = True,
    ) -> bytes:
        """Sign (if ``signer``) then encrypt, integrity-protected, in one OpenPGP message."""
        ...

    def sign_detached(self, data: bytes, signer: bytes) -> bytes:
        """An armored detached signature over ``data``."""
        ...


# --- Cleartext-signed text, in the one shape both backends return ---------------------------


def normalise_text(text: bytes) -> bytes:
    """Cleartext-signed content as both backends return it: LF line ends, final newline."""
    text = text.replace(b"\r\n", b"\n")
    return text if not text or text.endswith(b"\n") else text + b"\n"


def cleartext_body(data: bytes) -> bytes:
    """The text of a cleartext-signed message (RFC 4880 7): dash-unescaped, trailing blanks
    removed, as gpg outputs it. Used only when the signature did not verify."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    try:
        start = next(i for i, ln in enumerate(lines)
                     if ln.rstrip() == b"-----BEGIN PGP SIGNED MESSAGE-----")
    except StopIteration:
        return b""
    index = start + 1
    while index < len(lines) and lines[index].strip():
        index += 1  # "Hash:" armor headers, up to the empty line
    body: list[bytes] = []
    for line in lines[index + 1 :]:
        if line.rstrip() == b"-----BEGIN PGP SIGNATURE-----":
            break
        body.append((line[2:] if line.startswith(b"- ") else line).rstrip(b" \t"))
    return normalise_text(b"\n".join(body))


# --- Pre-flight inspection of a message's outer packets --------------------------------------

MessageKind = Literal["encrypted", "signed", "cleartext", "signature", "key"]

_ARMOR_LINE = re.compile(rb"^-----BEGIN PGP ([A-Z0-9 ,/]+)-----[ \t]*\r?$", re.MULTILINE)
_ARMOR_KINDS: dict[bytes, MessageKind] = {
    b"MESSAGE": "encrypted",  # refined from the packets below
    b"SIGNATURE": "signature",
    b"PUBLIC KEY BLOCK": "key",
    b"PRIVATE KEY BLOCK": "key",
}
_TAG_PKESK, _TAG_SIG, _TAG_SKESK, _TAG_OPS = 1, 2, 3, 4
_TAG_SECRET_KEY, _TAG_PUBLIC_KEY, _TAG_COMPRESSED, _TAG_SED = 5, 6, 8, 9
_TAG_MARKER, _TAG_LITERAL, _TAG_SEIPD, _TAG_AEAD = 10, 11, 18, 20
_ENCRYPTED_DATA = frozenset({_TAG_SED, _TAG_SEIPD, _TAG_AEAD})
WILDCARD_KEY_ID = "0000000000000000"


@dataclass(frozen=True)
class MessageShape:
    """What the outer packets of a message say, before any key is used.

    Truncated or damaged input is described as far as it goes: refusing it is the engine's
    job, with the uniform error.
    """

    kind: MessageKind
    tags: tuple[int, ...] = ()
    recipient_key_ids: tuple[str, ...] = ()  # from v3 PKESKs; WILDCARD_KEY_ID = hidden
    cipher: str | None = None  # only where it is in the clear (SEIPD v2, AEAD packets)

    @property
    def integrity_protected(self) -> bool:
        return _TAG_SED not in self.tags

    @property
    def compressed(self) -> bool:
        return _TAG_COMPRESSED in self.tags


def inspect_message(data: bytes) -> MessageShape:
    """Classify ``data`` by its armor and outer packet headers; ``PgpMalformed`` if neither."""
    return read_message(data)[0]


def read_message(data: bytes) -> tuple[MessageShape, bytes]:
    """``inspect_message``, and the message's binary packets (empty for cleartext-signed
    text), so that a caller who needs both dearmors a large message only once."""
    armor = _ARMOR_LINE.search(data[:4096])
    if armor is not None:
        label = armor.group(1)
        if label == b"SIGNED MESSAGE":
            return MessageShape("cleartext"), b""
        if label not in _ARMOR_KINDS:
            raise PgpMalformed(f"unexpected OpenPGP armor ({label.decode()})")
        binary = _dearmor_body(data[armor.end():])
    elif data[:1] and data[0] & 0x80:
        binary = data
    else:
        raise PgpMalformed("not an OpenPGP message")
    headers = _packet_headers(binary)
    tags = tuple(tag for tag, _ in headers if tag != _TAG_MARKER)
    if not tags:
        raise PgpMalformed("not an OpenPGP message")
    first = tags[0]
    kind: MessageKind
    if first in (_TAG_PKESK, _TAG_SKESK) or first in _ENCRYPTED_DATA:
        kind = "encrypted"
    elif first in (_TAG_OPS, _TAG_COMPRESSED, _TAG_LITERAL):
        kind = "signed"
    elif first == _TAG_SIG:
        # A lone signature packet is a detached signature; followed by data, a signed message.
        kind = "signature" if len(tags) == 1 or tags[1] == _TAG_SIG else "signed"
    elif first in (_TAG_SECRET_KEY, _TAG_PUBLIC_KEY):
        kind = "key"
    else:
        raise PgpMalformed("not an OpenPGP message")
    recipients = tuple(
        body[1:9].hex().upper() for tag, body in headers
        if tag == _TAG_PKESK and len(body) >= 9 and body[0] == 3
    )
    cipher: str | None = None
    for tag, body in headers:
        # SEIPD v2 and the (pre-RFC 9580) AEAD packet name their cipher outside the encryption.
        if (tag, body[:1]) in ((_TAG_SEIPD, b"\x02"), (_TAG_AEAD, b"\x01")) and len(body) > 1:
            cipher = cipher_name(body[1])
    return MessageShape(kind, tags, recipients, cipher), binary


# RFC 4880 9.4 / RFC 9580 9.5 hash algorithm ids, named as RFC 3156 micalg wants them.
_HASH_NAMES = {1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512",
               11: "sha224", 12: "sha3-256", 14: "sha3-512"}


def signature_hash_algorithm(signature: bytes) -> str:
    """The hash algorithm of the first signature packet in ``signature``, e.g. "sha512"."""
    armor = _ARMOR_LINE.search(signature[:4096])
    binary = _dearmor_body(signature[armor.end():]) if armor else signature
    headers = _packet_headers(binary)
    if not headers or headers[0][0] != _TAG_SIG or len(headers[0][1]) < 4:
        raise PgpMalformed("not an OpenPGP signature")
    body = headers[0][1]
    # v4/v6: version, type, public-key algo, hash algo. v3: version, 5, type, time(4),
    # key id(8), public-key algo, hash algo (beyond the 16 bytes kept; v3 is long obsolete).
    if body[0] not in (4, 5, 6):
        raise PgpMalformed("unsupported OpenPGP signature version")
    return _HASH_NAMES.get(body[3], f"unknown-{body[3]}")


def dearmor(data: bytes) -> bytes:
    """The binary packets of ``data``: its first armored block decoded, or ``data`` itself."""
    armor = _ARMOR_LINE.search(data[:4096])
    return _dearmor_body(data[armor.end():]) if armor is not None else data


_ARMOR_WHITESPACE = b" \t\r\n\x0b\x0c"


def _dearmor_body(rest: bytes) -> bytes:
    # Written with find/translate rather than a loop over lines: messages of several MB are
    # dearmored on every decryption, and a per-line Python loop cost ~15 ms per MB.
    line, after = _next_line(rest, 0)
    pos = after if not line.strip() else 0  # remainder of the BEGIN line
    # Armor headers ("Version: ...", "Comment: ...") run up to the first empty line.
    while pos < len(rest):
        line, after = _next_line(rest, pos)
        if not line.strip() or b":" not in line:
            break
        pos = after
    # The base64 ends at the "-----END" line ("-" is not in the base64 alphabet) or at the
    # "=XXXX" checksum line before it ("=" elsewhere is only padding, at the data's end).
    end = rest.find(b"-----", pos)
    end = len(rest) if end == -1 else end
    search = pos
    while (equals := rest.find(b"=", search, end)) != -1:
        line_start = max(rest.rfind(b"\n", pos, equals), rest.rfind(b"\r", pos, equals)) + 1
        line, search = _next_line(rest, max(line_start, pos))
        line = line.strip()
        if line.startswith(b"=") and len(line) == 5:
            end = max(line_start, pos)
            break
        search = max(search, equals + 1)
    text = rest[pos:end].translate(None, _ARMOR_WHITESPACE)
    # Truncated armor: decode what is there; the engine will refuse the damaged message.
    text = text[: len(text) - len(text) % 4]
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:
        raise PgpMalformed("not an OpenPGP message") from None


def _next_line(buf: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` (without its end: LF, CR or CRLF) and where the next starts."""
    newline = buf.find(b"\n", pos)
    stop = len(buf) if newline == -1 else newline
    carriage = buf.find(b"\r", pos, stop)
    line_end = carriage if carriage != -1 else stop
    if line_end == len(buf):
        return buf[pos:], len(buf)
    following = line_end + (2 if buf[line_end : line_end + 2] == b"\r\n" else 1)
    return buf[pos:line_end], following


def _packet_headers(buf: bytes) -> list[tuple[int, bytes]]:
    """Outer packets as (tag, first bytes of the body); stops quietly at truncation."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(buf):
        ctb = buf[pos]
        if not ctb & 0x80:
            if not out:
                raise PgpMalformed("not an OpenPGP message")
            break
        pos += 1
        if ctb & 0x40:
            tag = ctb & 0x3F
            body_start, end = _new_format_extent(buf, pos)
        else:
            tag = (ctb >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(ctb & 3)
            if size is None:  # indeterminate length: to the end of the data
                body_start, end = pos, len(buf)
            else:
                length = int.from_bytes(buf[pos : pos + size], "big")
                body_start, end = pos + size, pos + size + length
        out.append((tag, buf[body_start : min(body_start + 16, end)]))
        pos = end
    return out


def _new_format_extent(buf: bytes, pos: int) -> tuple[int, int]:
    """(body start, end) of a new-format packet, following partial-length chunks."""
    body_start: int | None = None
    while pos < len(buf):
        first = buf[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 224:
            length = ((first - 192) << 8) + (buf[pos + 1] if pos + 1 < len(buf) else 0) + 192
            pos += 2
        elif first == 255:
            length, pos = int.from_bytes(buf[pos + 1 : pos + 5], "big"), pos + 5
        else:  # partial body length: a chunk, then another length header
            length, pos = 1 << (first & 0x1F), pos + 1
            if body_start is None:
                body_start = pos
            pos += length
            continue
        if body_start is None:
            body_start = pos
        return body_start, pos + length
    return (body_start if body_start is not None else pos), len(buf)
