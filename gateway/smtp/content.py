"""Checks on the raw DATA bytes, run before anything parses them.

aiosmtpd splits DATA only at CRLF, so a bare CR or bare LF reaches us inside the content.
Parsers and the next hop disagree about what those mean: one MTA ends the message at
``\\n.\\r\\n``, another does not (SMTP smuggling); one header parser splits
``Subject: a\\rX-Injected: y`` into two headers, another does not. Refusing every bare CR/LF
before parsing removes the disagreement instead of trying to win it.
"""

from __future__ import annotations

from gateway.smtp import codes


def has_bare_cr_or_lf(data: bytes) -> bool:
    """A CR not followed by LF, or an LF not preceded by CR, anywhere.

    Every CRLF accounts for one CR and one LF, so all of them are paired exactly when the
    three counts agree; three C-speed passes beat a regex with lookbehind on the hot path.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def header_block_size(data: bytes, limit: int) -> int:
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


def content_problem(data: bytes, max_header_bytes: int) -> str | None:
    """The reply refusing ``data``, or None if it may be stored."""
    if has_bare_cr_or_lf(data):
        return codes.BARE_CR_OR_LF
    if b"\x00" in data:
        return codes.NUL_IN_CONTENT
    if header_block_size(data, max_header_bytes) > max_header_bytes:
        return codes.HEADERS_TOO_LARGE
    return None
