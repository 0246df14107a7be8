"""Encrypted content, recognised by what the bytes are, never by the file name.

A virus scanner that is handed ciphertext finds nothing and says "clean": the one thing an
office's own filters cannot do, and the reason the gateway exists. So every object the
scanner walks (a decoded MIME part, a member of an archive, a decrypted attachment) is asked
here whether it is encrypted:

- ``openpgp``: an armored ``-----BEGIN PGP MESSAGE-----`` block at a line start, or binary
  OpenPGP whose first packets are a public-key or symmetric-key encrypted session key
  (tag 1 or 3) followed by more session keys or encrypted data (tags 9, 18, 20), with
  plausible versions and lengths;
- ``cms``: CMS EnvelopedData or AuthEnvelopedData (S/MIME), as DER, PEM or base64 text;
- ``pdf``: a PDF whose trailer (or cross-reference stream) names an ``/Encrypt`` dictionary
  that does not open with the empty user password (``pdf_encryption``): a PDF that is only
  restricted (printing, copying) opens without a password and ClamAV reads it;
- ``office``: an OLE2 compound file holding ``EncryptedPackage`` (a password-protected OOXML
  document, ECMA-376 "agile" or "standard" encryption);
- encrypted archives (zip members, 7z, RAR headers) are ``scanning.archives``' business.

OpenPGP and CMS may be ours to open (``openable``); the scanner asks its opener. The rest
cannot be opened without a password the gateway does not have, and is UNSCANNABLE.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import re
import struct
import zlib
from dataclasses import dataclass

from scanning.content_types import ole_entry
from scanning.pdf_security import pdf_encryption

_ARMOR = b"-----BEGIN PGP MESSAGE-----"
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# DER of the CMS content types, as they follow the ContentInfo's SEQUENCE header.
_ENVELOPED_OID = bytes.fromhex("06092a864886f70d010703")  # 1.2.840.113549.1.7.3
_AUTH_ENVELOPED_OID = bytes.fromhex("060b2a864886f70d0109100117")  # ...9.16.1.23
_PEM_CMS = re.compile(rb"-----BEGIN (?:PKCS7|CMS)-----\s+([A-Za-z0-9+/=\s]+?)-----END ")
_BASE64_HEAD = re.compile(rb"\A\s*(MI[A-Za-z0-9+/]{62})")

_TAG_PKESK, _TAG_SKESK = 1, 3
_TAG_SED, _TAG_SEIPD, _TAG_AEAD, _TAG_MARKER = 9, 18, 20, 10
_TAG_SIGNATURE, _TAG_ONE_PASS, _TAG_COMPRESSED, _TAG_LITERAL = 2, 4, 8, 11
_HASHES = frozenset({1, 2, 3, 8, 9, 10, 11, 12, 14})
_PUBLIC_KEY_ALGORITHMS = frozenset({1, 3, 17, 19, 22, 27, 28})
_SESSION_KEY_TAGS = frozenset({_TAG_PKESK, _TAG_SKESK})
_ENCRYPTED_DATA_TAGS = frozenset({_TAG_SED, _TAG_SEIPD, _TAG_AEAD})


@dataclass(frozen=True)
class Encrypted:
    """What kind of encryption an object carries, and whether the gateway may hold its key."""

    kind: str  # "openpgp", "cms", "pdf", "office"
    description: str  # for people: "OpenPGP", "password-protected PDF", ...
    openable: bool  # OpenPGP and CMS: perhaps with one of our keys
    der: bytes | None = None  # CMS: the DER, when it arrived as PEM or base64 text


def encryption_of(data: bytes) -> Encrypted | None:
    """The encryption ``data`` carries, or None if it is not encrypted as far as we can tell."""
    # Binary OpenPGP first: a signed PDF is a literal packet whose "%PDF-" sits in the
    # first kilobyte, where the PDF check would look for it.
    openpgp = _binary_kind(data) if data[:1] and data[0] & 0x80 else None
    if openpgp is None:
        head = data[:16]
        if head.startswith(b"%PDF-") or b"%PDF-" in data[:1024]:
            reason = pdf_encryption(data)
            return None if reason is None else Encrypted("pdf", reason, openable=False)
        if head.startswith(_OLE2):
            if ole_entry(data, ("EncryptedPackage",)) is not None:
                return Encrypted("office", "password-protected Office document (OOXML "
                                           "EncryptedPackage)", openable=False)
            return None
        cms = _cms_der(data)
        if cms is not None:
            return Encrypted("cms", "S/MIME (CMS EnvelopedData)", openable=True,
                             der=None if cms is data else cms)
        openpgp = _armored_kind(data)
    if openpgp == "encrypted":
        return Encrypted("openpgp", "OpenPGP", openable=True)
    if openpgp == "signed":
        # Not encrypted, but compressed inside OpenPGP packets that ClamAV does not read:
        # opened (signature checked, content inflated) like an encrypted one.
        return Encrypted("openpgp-signed", "OpenPGP signed data", openable=True)
    return None


ARMOR = _ARMOR  # what encryption_of looks for anywhere in the data (scanning.deferred)
# First packet tags _binary_kind goes on to look at; any other tag makes it answer None.
_TELLING_FIRST_TAGS = frozenset({_TAG_PKESK, _TAG_SKESK, _TAG_ONE_PASS, _TAG_COMPRESSED,
                                 _TAG_MARKER})


def head_may_show_encryption(head: bytes) -> bool:
    """False only if ``encryption_of`` answers None for *any* data that starts with ``head``
    (at least 1 KiB of it) and holds no ``ARMOR`` anywhere: then the rest of the data need
    not be read (scanning.deferred). Each line below is one place where encryption_of
    reads beyond the first kilobyte or could answer something; tests/test_scan_deferred.py
    checks the contract on generated data.
    """
    if len(head) < 1024:
        return True
    first = head[0]
    if first & 0x80:
        # _packets always keeps the first packet's tag (the header of a packet that starts
        # a long data is complete), and _binary_kind answers None unless it is one of these.
        tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
        if tag in _TELLING_FIRST_TAGS:
            return True
    return (b"%PDF-" in head[:1024]  # the PDF check reads the whole file
            or head.startswith(_OLE2)  # OLE directory entries anywhere
            or first == 0x30  # DER EnvelopedData
            or head[:64].lstrip().startswith(b"-----BEGIN ")  # PEM
            or _BASE64_HEAD.match(head[:256]) is not None)  # a .p7m as base64 text


# --- CMS --------------------------------------------------------------------------------------


def _cms_der(data: bytes) -> bytes | None:
    """``data`` itself if it is DER EnvelopedData, the decoded DER if it is PEM or base64."""
    if _is_enveloped_der(data):
        return data
    if data[:64].lstrip().startswith(b"-----BEGIN "):
        pem = _PEM_CMS.search(data[:1 << 20] if len(data) > 1 << 20 else data)
        if pem is not None:
            der = _b64(pem.group(1))
            if der is not None and _is_enveloped_der(der):
                return der
        return None
    head = _BASE64_HEAD.match(data[:256])
    if head is not None:
        # A .p7m saved as base64 text: look at the start first, decode all only on a hit.
        start = _b64(head.group(1))
        if start is not None and _is_enveloped_der(start, complete=False):
            der = _b64(data)
            if der is not None and _is_enveloped_der(der):
                return der
    return None


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_enveloped_der(data: bytes, *, complete: bool = True) -> bool:
    """A DER/BER SEQUENCE whose first element is the OID of (Auth)EnvelopedData."""
    if len(data) < 2 + len(_AUTH_ENVELOPED_OID) or data[0] != 0x30:
        return False
    first = data[1]
    if first == 0x80:  # BER indefinite length, as some encoders write CMS
        at = 2
    elif first < 0x80:
        at = 2
        if complete and 2 + first != len(data):
            return False
    else:
        count = first & 0x7F
        if count > 4 or len(data) < 2 + count:
            return False
        length = int.from_bytes(data[2:2 + count], "big")
        at = 2 + count
        if complete and at + length != len(data):
            return False
    body = data[at:at + len(_AUTH_ENVELOPED_OID)]
    return body.startswith(_ENVELOPED_OID) or body == _AUTH_ENVELOPED_OID


# --- OpenPGP ---------------------------------------------------------------------------------


def _armored_kind(data: bytes) -> str | None:
    """"encrypted" or "signed" for an armored OpenPGP message at a line start in ``data``."""
    at = data.find(_ARMOR)  # bytes.find: fast on 50 MB, where a regex is not
    while at >= 0:
        if at == 0 or data[at - 1] in b"\r\n":
            # gpg --sign --armor writes the same armor line as --encrypt: the packets inside
            # tell them apart. Armor whose start cannot be read counts as encrypted.
            return _binary_kind(_dearmor_start(data, at + len(_ARMOR))) or "encrypted"
        at = data.find(_ARMOR, at + 1)
    return None


def _dearmor_start(data: bytes, at: int) -> bytes:
    """The first few KB of the binary inside an armor whose first line ends at ``at``."""
    lines = data[at:at + 8192].splitlines()[1:]
    text = bytearray()
    in_headers = True
    for raw_line in lines:
        line = raw_line.strip()
        if in_headers:
            # "Version: ..." armor headers end at the first empty line.
            if line and b":" in line:
                continue
            in_headers = False
            if not line:
                continue
        if not line or line.startswith((b"=", b"-----")):
            break  # the checksum line or the end of the armor
        text += line
    return _b64(bytes(text[:len(text) - len(text) % 4])) or b""


def _binary_kind(data: bytes) -> str | None:
    packets = [(tag, body) for tag, body in _packets(data, 4) if tag != _TAG_MARKER]
    if not packets:
        return None
    first, body = packets[0]
    if first in _SESSION_KEY_TAGS:
        if not all(_plausible_session_key(tag, b) for tag, b in packets
                   if tag in _SESSION_KEY_TAGS):
            return None
        following = [tag for tag, _ in packets[1:] if tag not in _SESSION_KEY_TAGS]
        return "encrypted" if following and following[0] in _ENCRYPTED_DATA_TAGS else None
    if first == _TAG_ONE_PASS:
        # v3: version, signature type (binary or text), hash algorithm, public-key algorithm
        plausible = len(body) >= 4 and body[0] == 3 and body[1] in (0, 1) \
            and body[2] in _HASHES and body[3] in _PUBLIC_KEY_ALGORITHMS
        return "signed" if plausible else None
    if first == _TAG_COMPRESSED and body[:1] in (b"\x01", b"\x02", b"\x03"):
        # Worth calling OpenPGP only if what it inflates to starts with a packet of a signed
        # message: a random file beginning with the right two bytes is not.
        return "signed" if _inflates_to_packet(data, body[0]) else None
    return None


def _inflates_to_packet(data: bytes, algorithm: int) -> bool:
    at = _body_start(data) + 1  # the compressed data follows the algorithm octet
    try:
        if algorithm == 3:
            start = bz2.BZ2Decompressor().decompress(data[at:at + 4096], 16)
        else:
            wbits = -zlib.MAX_WBITS if algorithm == 1 else zlib.MAX_WBITS
            start = zlib.decompressobj(wbits).decompress(data[at:at + 4096], 16)
    except (OSError, ValueError, EOFError, zlib.error):
        return False
    tags = [tag for tag, _ in _packets(start, 1)]
    return bool(tags) and tags[0] in (_TAG_ONE_PASS, _TAG_LITERAL, _TAG_SIGNATURE)


def _plausible_session_key(tag: int, body: bytes) -> bool:
    if not body:
        return False
    if tag == _TAG_PKESK:
        # v3: version, key id (8), public-key algorithm; v6: version, length, ...
        if body[0] == 3:
            return len(body) > 10 and body[9] in (1, 2, 16, 18, 22, 25, 26)
        return body[0] == 6
    # SKESK v4: version, cipher, S2K type; v5/v6 (AEAD) begin with version and a length.
    if body[0] == 4:
        return len(body) >= 3 and 1 <= body[1] <= 13 and body[2] in (0, 1, 3, 4)
    return body[0] in (5, 6)


def _packets(data: bytes, limit: int) -> list[tuple[int, bytes]]:
    """Up to ``limit`` (tag, first bytes of the body) pairs; stops at anything implausible.

    Only the first 16 bytes of a body are kept: enough for the version checks. An
    encrypted-data packet (or one with a partial length) ends the walk.
    """
    found: list[tuple[int, bytes]] = []
    pos = 0
    size = len(data)
    while pos < size and len(found) < limit:
        octet = data[pos]
        if not octet & 0x80:
            break
        if octet & 0x40:  # new format
            tag = octet & 0x3F
            header = _new_length(data, pos + 1)
            if header is None:
                break
            length, used = header
        else:  # old format
            tag = (octet >> 2) & 0x0F
            kind = octet & 0x03
            if kind == 3:  # indeterminate length: to the end
                length, used = size - pos - 1, 0
            else:
                used = 1 << kind
                if pos + 1 + used > size:
                    break
                length = int.from_bytes(data[pos + 1:pos + 1 + used], "big")
        start = pos + 1 + used
        if tag == 0:
            break
        found.append((tag, data[start:start + 16]))
        if tag in _ENCRYPTED_DATA_TAGS or length < 0:
            break
        if start + length > size:
            break
        pos = start + length
    return found


def _body_start(data: bytes) -> int:
    """Where the body of the first packet starts (its header's length)."""
    octet = data[0]
    if octet & 0x40:
        header = _new_length(data, 1)
        return 1 + (header[1] if header is not None else 0)
    kind = octet & 0x03
    return 1 + (0 if kind == 3 else 1 << kind)


def _new_length(data: bytes, at: int) -> tuple[int, int] | None:
    if at >= len(data):
        return None
    first = data[at]
    if first < 192:
        return first, 1
    if first < 224:
        if at + 1 >= len(data):
            return None
        return ((first - 192) << 8) + data[at + 1] + 192, 2
    if first == 255:
        if at + 5 > len(data):
            return None
        return struct.unpack_from(">L", data, at + 1)[0], 5
    # Partial body length: only encrypted or literal data may use it.
    return -1, 1
