"""Lines that start with a dot (RFC 5321 4.5.2), found fast: on the way in, the DATA terminator
and the lines to unstuff; on the way out, whether a message needs stuffing at all.

A search for "CRLF ." reads a megabyte in about 0.8 ms, because every CRLF in it is a partial
match; memchr finds the next dot in a fraction of that. Mail has few dots: some in the header
block, none in base64 bodies, one a sentence in text. So the dots are looked at one by one,
and only where many of them come (long text) does the three-byte search take over.
Measured on the relay benchmark's 13.7 MB message (34 dots): 0.6 ms against 11.3 ms.
"""

from __future__ import annotations

# Dots looked at one by one in a call before the search for the whole sequence takes over:
# a message of nothing but dots costs no more than a few dozen steps in Python per call.
DOT_PROBES = 64
TERMINATOR = b"\r\n.\r\n"


def find_dot_line(data: bytes | bytearray, start: int = 0) -> int:
    """Where the first "CRLF ." at or after ``start`` begins (its CR), or -1."""
    return _find(data, start, b"")


def has_dot_line(data: bytes | bytearray) -> bool:
    """Whether a line after the first starts with a dot ("CRLF ." anywhere)."""
    return _find(data, 0, b"") >= 0


def find_terminator(data: bytes | bytearray, start: int = 0) -> int:
    """Where the first CRLF "." CRLF (the end of DATA) at or after ``start`` begins, or -1."""
    return _find(data, start, b"\r\n")


def _find(data: bytes | bytearray, start: int, after: bytes) -> int:
    """The first CRLF "." ``after`` at or after ``start``, or -1."""
    dot = data.find(b".", start + 2)
    for _ in range(DOT_PROBES):
        if dot < 0:
            return -1
        if data[dot - 2] == 0x0D and data[dot - 1] == 0x0A and data.startswith(after, dot + 1):
            return dot - 2
        dot = data.find(b".", dot + 1)
    return -1 if dot < 0 else data.find(b"\r\n." + after, dot - 2)
