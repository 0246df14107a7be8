"""Put a short text of ours in front of a message, where every mail client shows it.

The message's entity (its Content-* headers and body) becomes the second part of a new
multipart/mixed, untouched; the first part is our text/plain. The other header fields
(From, To, Subject, Date, Message-ID ...) stay on the outer message, so threading, replies
and the routing after this step see the same message as before.
"""

from __future__ import annotations

import secrets
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from gateway.mime.entity import split_entity
from gateway.mime.headers import CRLF, header_block_alone, replace_header


def text_part(text: str) -> bytes:
    """A text/plain; charset=utf-8 entity, quoted-printable (7-bit safe), CRLF lines."""
    part = EmailMessage(policy=policy.SMTP)
    part.set_content(text, charset="utf-8", cte="quoted-printable", disposition="inline")
    del part["MIME-Version"]
    return part.as_bytes()


def _boundary(*contents: bytes) -> bytes:
    while True:
        boundary = b"=_xgate_" + secrets.token_hex(16).encode("ascii")
        if not any(boundary in content for content in contents):
            return boundary


def with_leading_text(message: bytes, text: str) -> bytes:
    """``message`` as multipart/mixed: ``text`` first, then the original entity."""
    outer, entity = split_entity(message)
    first = text_part(text)
    boundary = _boundary(first, entity)
    delimiter = b"--" + boundary
    body = (delimiter + CRLF + first + CRLF + delimiter + CRLF + entity + CRLF
            + delimiter + b"--" + CRLF)
    headers = [*outer, b"MIME-Version: 1.0",
               b'Content-Type: multipart/mixed; boundary="' + boundary + b'"']
    return CRLF.join(headers) + CRLF + CRLF + body


def subject_of(message: bytes) -> str | None:
    """The Subject, decoded (RFC 2047), or None if there is none."""
    block = header_block_alone(message)
    headers = BytesHeaderParser(policy=policy.default).parsebytes(block + CRLF + CRLF)
    value = headers.get("Subject")
    return None if value is None else str(value)


def prefix_subject(message: bytes, prefix: str) -> bytes:
    """Put ``prefix`` in front of the Subject (once; a reply may carry it already)."""
    subject = (subject_of(message) or "").strip()
    if subject.startswith(prefix):
        return message
    return replace_header(message, "Subject", f"{prefix} {subject}".strip())
