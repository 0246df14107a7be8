"""Quoted-printable decoded in pieces, with the standard library's answer.

``binascii.a2b_qp`` allocates its output at the size of the whole input, then copies what
it decoded into the result: a 10 MB text part briefly cost twice its size on top of the
message. Decoding is line by line (a soft break "=" ends at the next LF, an escape never
crosses a line), so pieces that end right after an LF decode to the same bytes; they are
written into one buffer allocated at about the decoded size, handed out without a last copy.
"""

from __future__ import annotations

import binascii
import io

# Inputs up to this size are decoded at once; larger ones in pieces of about this size.
_PIECE = 1 << 18


def decode_qp(data: bytes | str, start: int = 0, end: int | None = None, *,
              piece: int = _PIECE) -> bytes:
    """``binascii.a2b_qp(data[start:end])`` without a second whole copy of the result."""
    stop = len(data) if end is None else end
    if stop - start <= piece:
        return binascii.a2b_qp(_window(data, start, stop))
    out = io.BytesIO()
    # Allocated once at about the decoded size: an escape "=XX" gives one byte for three
    # (a soft break none for three). Wrong either way only costs memory: a buffer grown
    # once more, or shrunk in place at the end.
    escapes = (data.count("=", start, stop) if isinstance(data, str)
               else data.count(b"=", start, stop))
    out.seek(max(stop - start - 2 * escapes, 1) - 1)
    out.write(b"\0")
    out.seek(0)
    at = start
    while at < stop:
        cut = min(stop, at + piece)
        if cut < stop:
            newline = (data.find("\n", cut, stop) if isinstance(data, str)
                       else data.find(b"\n", cut, stop))
            cut = stop if newline < 0 else newline + 1
        out.write(binascii.a2b_qp(_window(data, at, cut)))
        at = cut
    out.truncate()
    # The buffer itself, shrunk in place to what was written (CPython).
    return out.getvalue()


def _window(data: bytes | str, start: int, end: int) -> bytes | str | memoryview:
    if isinstance(data, str):
        return data[start:end]
    return memoryview(data)[start:end]
