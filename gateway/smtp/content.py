"""Checks on the raw DATA bytes, run before anything parses them.

aiosmtpd splits DATA only at CRLF, so a bare CR or bare LF reaches us inside the content.
Parsers and the next hop disagree about what those mean: one MTA ends the message at
``\\n.\\r\\n``, another does not (SMTP smuggling); one header parser splits
``Subject: a\\rX-Injected: y`` into two headers, another does not. Refusing every bare CR/LF
before parsing removes the disagreement instead of trying to win it.
"""

from __future__ import annotations

from crypto import canonical
from gateway.smtp import codes


def bare_line_end(data: bytes | bytearray) -> str | None:
    """The refusal for an LF not preceded by CR or a CR not followed by LF anywhere (bare
    LF named first: it is the usual one, from Unix line ends); None if every line ends in
    CRLF (``crypto.canonical.bare_line_end``)."""
    bare = canonical.bare_line_end(data)
    if bare is None:
        return None
    return codes.BARE_LF if bare == "LF" else codes.BARE_CR


def has_bare_cr_or_lf(data: bytes) -> bool:
    return bare_line_end(data) is not None


def header_block_size(data: bytes | bytearray, limit: int) -> int:
    """Length of the header block (up to and including the CRLF that ends the last header).

    Only looks at the first ``limit`` + 4 bytes: an answer above ``limit`` is all the caller
    needs, and a huge message should not cost a full scan.
    """
    if data.startswith(b"\r\n"):
        return 0
    end = data.find(b"\r\n\r\n", 0, limit + 4)
    if end >= 0:
        return end + 2
    # No blank line within reach: the headers run at least that far (or the message is
    # all headers).
    return min(len(data), limit + 1)


def content_problem(data: bytes | bytearray, max_header_bytes: int) -> str | None:
    """The reply refusing ``data``, or None if it may be stored."""
    bare = bare_line_end(data)
    if bare is not None:
        return bare
    if b"\x00" in data:
        return codes.NUL_IN_CONTENT
    if header_block_size(data, max_header_bytes) > max_header_bytes:
        return codes.HEADERS_TOO_LARGE
    return None
