"""The second look at the whole message: what scanning part by part cannot see.

ClamAV gets every leaf part decoded. What lies outside the leaf bodies (the message's and
every part's header fields, the preamble and epilogue of each multipart, anything after a
closing boundary, the bodies the scanner did not decode in full) only the message as a whole
shows it, and ClamAV finds malware there that the parts do not (tests/test_scan_residue.py:
in a header, a preamble, an epilogue, a part after the closing boundary, a base64 body with
foreign text in it, a second uuencoded block, a duplicated Content-Transfer-Encoding).

Sending the whole message again made clamd decode every attachment a second time (40-55 % of
its work per message). So the second stream is the message with the leaf bodies left out
that were already scanned decoded *and* whose decoding shows every byte
(``scanning.parts.Leaf.body``): the bytes left out are exactly those bodies, found in the
raw message and compared byte for byte, so whatever is cut was seen by ClamAV in another
form. Everything else goes to clamd as it stands, headers and boundaries included, and
clamd parses that as mail in its own way, as it did the whole message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# The first bytes of a body that are looked for in the message; the rest is compared.
_PROBE_BYTES = 256
# Places where the probe matched but the body did not, before the body is left in.
_MAX_TRIES = 4
# How far after the previous body the next one may start: the next part's header block and
# boundary lines (and a preamble or epilogue) lie between. A body further away (or none,
# like the content of opaque-signed S/MIME, which is not in the raw bytes) stays in the
# residue, and nobody can make the search read the message once per part.
_MAX_GAP = 64 * 1024
# Piece size for the comparison (the parser's text is encoded piece by piece).
_STEP = 1 << 18


def body_spans(raw: bytes, bodies: Iterable[str | bytes | None]) -> list[tuple[int, int]]:
    """Where in ``raw`` the given bodies stand, in order, as (start, end); not overlapping.

    ``bodies`` in document order; a body not found (None, empty, decrypted content that is
    not in ``raw``, text the parser changed) is skipped and stays in the residue.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for body in bodies:
        if not body:
            continue
        span = find_body(raw, body, cursor)
        if span is not None:
            spans.append(span)
            cursor = span[1]
    return spans


def residue_chunks(raw: bytes, spans: list[tuple[int, int]]) -> Iterator[memoryview]:
    """``raw`` without the spans, as views into it (nothing copied)."""
    view = memoryview(raw)
    at = 0
    for start, end in spans:
        if start > at:
            yield view[at:start]
        at = max(at, end)
    if at < len(raw):
        yield view[at:]


def residue_size(raw: bytes, spans: list[tuple[int, int]]) -> int:
    return len(raw) - sum(end - start for start, end in spans)


def find_body(raw: bytes, body: str | bytes, start: int) -> tuple[int, int] | None:
    """Where ``body`` (the parser's text of it, or its bytes) stands in ``raw`` from
    ``start`` on, compared byte for byte; None if not found in a few tries."""
    probe = _encoded(body[:_PROBE_BYTES])
    if probe is None:
        return None
    at = start
    for _ in range(_MAX_TRIES):
        at = raw.find(probe, at, start + _MAX_GAP + len(probe))
        if at < 0:
            return None
        if _same(raw, at, body):
            return at, at + len(body)
        at += 1
    return None


def _same(raw: bytes, at: int, body: str | bytes) -> bool:
    if at + len(body) > len(raw):
        return False
    if isinstance(body, bytes):
        return raw.startswith(body, at)
    for offset in range(0, len(body), _STEP):
        piece = _encoded(body[offset:offset + _STEP])
        if piece is None or not raw.startswith(piece, at + offset):
            return False
    return True


def _encoded(text: str | bytes) -> bytes | None:
    if isinstance(text, bytes):
        return text
    # The parser holds a body as text with every byte that is not ASCII as a surrogate;
    # the same encoding gives the bytes back.
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
