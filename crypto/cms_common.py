"""CMS pieces shared by S/MIME decryption, verification and the outbound side."""

from __future__ import annotations

import binascii
import email.parser
import email.policy
from email.message import Message

from asn1crypto import cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from crypto.mime_base64 import decode_base64


class GcmParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 GCMParameters; asn1crypto leaves them as an opaque Any."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


def identifies(rid: cms.RecipientIdentifier, cert: x509.Certificate) -> bool:
    """Whether a recipient or signer identifier (issuer and serial, or subject key
    identifier) names ``cert``."""
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        issuer = ias["issuer"]
        der = cert.issuer.public_bytes()
        # The same encoding is the same name, and nearly always what a sender wrote (it
        # copies the certificate's issuer); only a differently encoded name needs asn1crypto's
        # Name equality with the RFC 5280 comparison rules, which costs a string preparation
        # of every attribute.
        if issuer.dump() == der:
            return True
        return bool(issuer == asn1_x509.Name.load(der))
    if rid.name == "subject_key_identifier":
        return bool(rid.chosen.native == _subject_key_id(cert))
    return False


def _subject_key_id(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        # Senders compute the RFC 5280 method-1 identifier when the extension is missing.
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def cms_content_type(der: bytes) -> str | None:
    """The ContentInfo's content type ("signed_data", "enveloped_data" ...), or None.

    Only the outer type is read, so this is cheap and safe on garbage; the full parse with
    its checks happens where the content is used.
    """
    try:
        info = cms.ContentInfo.load(der)
        value = info["content_type"].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None
    return value if isinstance(value, str) else None


# Base64 characters decoded to read a ContentInfo's type: 72 bytes, more than its header and
# the longest content type's object identifier take.
_PREFIX_CHARS = 96


def body_content_type(raw_mime: bytes, headers: Message) -> str | None:
    """The content type of the ContentInfo in the entity's body ("signed_data" ...), or None,
    read from its first bytes: the body is decoded once, by whoever opens it, not also to
    find out what it is."""
    start = _body_start(raw_mime)
    encoding = str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if encoding == "base64":
        chars = b""
        pos = start
        while len(chars) < _PREFIX_CHARS and pos < len(raw_mime):
            chars += b"".join(raw_mime[pos : pos + 256].split())
            pos += 256
        chars = chars[: min(len(chars), _PREFIX_CHARS) // 4 * 4]
        try:
            prefix = binascii.a2b_base64(chars)
        except binascii.Error:
            return None
    elif encoding in ("7bit", "8bit", "binary"):
        prefix = raw_mime[start : start + _PREFIX_CHARS]
    else:
        try:
            prefix = entity_body(raw_mime, headers)[:_PREFIX_CHARS]
        except ValueError:
            return None
    return _prefix_content_type(prefix)


def _prefix_content_type(prefix: bytes) -> str | None:
    """The content type named at the start of a DER or BER ContentInfo, or None."""
    if len(prefix) < 2 or prefix[0] != 0x30:  # SEQUENCE
        return None
    length = prefix[1]
    pos = 2
    if length & 0x80 and length != 0x80:  # long form; 0x80 is BER's indefinite length
        pos += length & 0x7F
    if prefix[pos : pos + 1] != b"\x06" or len(prefix) < pos + 2 or prefix[pos + 1] & 0x80:
        return None
    oid = prefix[pos : pos + 2 + prefix[pos + 1]]
    if len(oid) != 2 + prefix[pos + 1]:
        return None
    try:
        value = cms.ContentType.load(oid).native
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _body_start(raw_mime: bytes) -> int:
    end = raw_mime.find(b"\r\n\r\n")
    skip = 4
    if end < 0 or (0 <= raw_mime.find(b"\n\n", 0, end) < end):
        end, skip = raw_mime.find(b"\n\n"), 2
    return end + skip if end >= 0 else len(raw_mime)


def entity_headers(raw_mime: bytes) -> Message:
    """The entity's header fields only; its body is left unparsed.

    A megabyte of base64 is thousands of lines, and the email package's full parse of them
    costs several times the decryption itself; the headers are all a CMS entity needs.
    """
    # Only the header block goes to the parser: even in headers-only mode it would read and
    # split every line of the body.
    end = raw_mime.find(b"\r\n\r\n")
    head = raw_mime if end < 0 else raw_mime[: end + 4]
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)


def entity_body(raw_mime: bytes, headers: Message) -> bytes:
    """The decoded body of a single-part entity (base64, or 7bit/8bit/binary as is)."""
    body = raw_mime[_body_start(raw_mime):]
    encoding = str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if encoding == "base64":
        # Non-strict: line breaks and other characters outside the alphabet are skipped,
        # as MIME requires of a decoder (RFC 2045 6.8).
        try:
            return decode_base64(body)
        except binascii.Error as exc:
            raise ValueError(f"bad base64 body: {exc}") from None
    if encoding in ("7bit", "8bit", "binary"):
        return body
    # quoted-printable or anything unusual: let the email package decode it.
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw_mime)
    decoded = parsed.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""
