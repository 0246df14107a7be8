"""CRLF line endings, as mail transport delivers a MIME entity and as signatures cover it."""

from __future__ import annotations

import base64
import os
import re

_CRLF = b"\r\n"
_ANY_EOL = re.compile(rb"\r\n|\r|\n")


def canonicalize(data: bytes) -> bytes:
    """``data`` with every line ending as CRLF (RFC 8551 3.1.1, RFC 3156 5).

    Mail from the SMTP edge is canonical already, and counting is far cheaper than the
    regular expression on a megabyte, so canonical input is returned as it is.
    """
    crlf = data.count(_CRLF)
    if crlf == data.count(b"\n") == data.count(b"\r"):
        return data
    if b"\r" not in data:
        return data.replace(b"\n", _CRLF)
    return _ANY_EOL.sub(_CRLF, data)


_B64_LINE = 76  # RFC 2045 6.8: encoded lines of at most 76 characters


def mime_boundary(content: bytes, prefix: bytes) -> bytes:
    """A multipart boundary that does not occur in ``content``.

    144 random bits cannot plausibly occur in the content, but a collision would silently
    cut a part short, so it is checked anyway.
    """
    while True:
        boundary = prefix + base64.b32encode(os.urandom(18)).rstrip(b"=").lower()
        if boundary not in content:
            return boundary


def base64_lines(data: bytes) -> bytes:
    """``data`` base64-encoded in CRLF-terminated lines of 76 characters."""
    text = base64.b64encode(data)
    return b"".join(text[i : i + _B64_LINE] + _CRLF for i in range(0, len(text), _B64_LINE))
