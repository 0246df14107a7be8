"""CRLF line endings, as mail transport delivers a MIME entity and as signatures cover it."""

from __future__ import annotations

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
