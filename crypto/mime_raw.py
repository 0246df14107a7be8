"""MIME entities located in raw bytes, as ``email.feedparser`` (compat32) finds them.

A full parse with ``email`` costs far more than reading the header blocks and searching for
the delimiters, and it re-serialises what it returns. Here only header blocks are parsed, by
``email`` itself; bodies and body parts are found by their positions and left byte for byte
where they are. Where the boundaries are is decided as the stdlib parser decides it, so a
caller sees the parts that a full parse would build.

``spans`` cuts a whole entity into consecutive pieces (header blocks, multipart framing, leaf
bodies), so a caller can treat each piece by what it is, e.g. normalise line endings in text
but not in a binary body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import Enum

from crypto.mime_qp import decode_qp

_CRLF = b"\r\n"
# email.feedparser's notion of lines and header lines (headerRE), on bytes.
_EOL = re.compile(rb"\r\n|\r|\n")
_TRAILING_EOL = re.compile(rb"(?:\r\n|\r|\n)\Z")
_HEADER_LINE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")
_DECODED_CTES = frozenset({"quoted-printable", "base64", "x-uuencode", "uuencode", "uue", "x-uue"})
FIND_WINDOW = 65536
# Nesting that ``spans`` follows; deeper content is one leaf. The parse after decryption
# quarantines far shallower nesting (scanning.max_mime_depth), and each level costs a search
# through its whole body, so a hostile message must not make it unbounded.
MAX_SPAN_DEPTH = 32
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_IDENTITY_CTES = frozenset({"", "7bit", "8bit", "binary"})


@dataclass
class RawEntity:
    """An entity inside a byte string: its parsed header fields and where its body is."""

    headers: Message  # header fields only
    lead: bytes  # a "From " line that email gives back to the body, else empty
    start: int  # the rest of the body: data[start:end]
    end: int

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def transfer_encoding(self) -> str:
        """The Content-Transfer-Encoding, lower case; empty when there is none."""
        return str(self.headers.get("content-transfer-encoding", "")).strip().lower()

    def body(self, data: bytes, *, strip_eol: bool) -> bytes:
        """The body as ``email`` stores it: a body part loses the line ending before the
        next delimiter (``strip_eol``), a message or entity keeps all of it."""
        body = data[self.start : self.end]
        if self.lead:
            body = self.lead + body
        if strip_eol:
            eol = _TRAILING_EOL.search(body, max(0, len(body) - 2))
            if eol:
                body = body[: eol.start()]
        return body

    def _body_end(self, data: bytes, *, strip_eol: bool) -> int:
        """Where ``body`` ends in ``data``, for an entity without a lead."""
        if strip_eol:
            eol = _TRAILING_EOL.search(data, max(self.start, self.end - 2), self.end)
            if eol:
                return eol.start()
        return self.end

    def decoded(self, data: bytes, *, strip_eol: bool) -> bytes:
        """The body with the Content-Transfer-Encoding undone, as get_payload(decode=True)."""
        encoding = str(self.headers.get("content-transfer-encoding", "")).lower()
        if encoding == "quoted-printable" and not self.lead:
            end = self._body_end(data, strip_eol=strip_eol)
            # get_payload's own decoder (quopri.decodestring is a2b_qp) on the bytes as
            # they are, where they lie and in pieces (crypto.mime_qp): its way there turns
            # the body into a str and back first, and a slice would copy it once more.
            return decode_qp(data, self.start, end)
        body = self.body(data, strip_eol=strip_eol)
        if encoding not in _DECODED_CTES:
            return body  # what get_payload(decode=True) returns for any other encoding
        if encoding == "quoted-printable":
            return decode_qp(body)  # with a lead: as above, from the joined bytes
        self.headers.set_payload(body)
        decoded = self.headers.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""


def entity_at(data: bytes, start: int, end: int) -> RawEntity:
    """The entity in data[start:end], which must begin at a line start.

    Where its header block ends is found as email.feedparser finds it: at the first line
    that is neither a header field nor a continuation line; a blank line there is the
    separator and is dropped, any other line already belongs to the body. Only the header
    block is then parsed, by ``email`` itself.
    """
    pos, lines, last = start, 0, start
    while pos < end:
        eol = _EOL.search(data, pos, end)
        line_end = eol.end() if eol else end
        if not _HEADER_LINE.match(data, pos, line_end):
            break
        pos, lines, last = line_end, lines + 1, pos
    head_end = pos
    blank = _EOL.match(data, pos, end)
    body_start = blank.end() if blank else pos
    headers = BytesHeaderParser(policy=compat32).parsebytes(data[start:head_end])
    headers.set_payload("")
    # A "From " line last in a header block of several lines is given back to the body.
    lead = data[last:head_end] if lines > 1 and data.startswith(b"From ", last) else b""
    return RawEntity(headers, lead, body_start, end)


def body_parts(data: bytes, entity: RawEntity) -> list[tuple[int, int]] | None:
    """Where the body parts of a multipart entity are, or None where ``email`` would not
    make it a multipart (no boundary, or no opening delimiter).

    As email.feedparser: a delimiter line is ``--boundary``, optionally ``--``, optional
    blanks and the line end, at a line start; consecutive delimiter lines (even a closing
    one) open a single part; a part ends at the next delimiter line or where the entity
    ends (this entity's end is already the first delimiter line of any enclosing multipart,
    which email honours at any depth).
    """
    boundary = entity.headers.get_boundary()
    if boundary is None:
        return None
    try:
        delimiter = ("--" + boundary).encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None  # no line of the (ASCII-decoded) message can start with it
    if b"\r" in delimiter or b"\n" in delimiter:
        return None  # folded into the value: no line can start with it
    start, end = entity.start, entity.end
    first = _next_delimiter(data, start, end, delimiter)
    if first is None or first[2]:
        return None  # StartBoundaryNotFoundDefect: the body stays a string
    parts: list[tuple[int, int]] = []
    pos = first[1]
    while True:
        while (line := _delimiter_line(data, pos, end, delimiter)) is not None:
            pos = line[1]
        following = _next_delimiter(data, pos, end, delimiter)
        if following is None:
            parts.append((pos, end))
            return parts
        parts.append((pos, following[0]))
        if following[2]:
            return parts
        pos = following[1]


def _next_delimiter(data: bytes, pos: int, end: int,
                    delimiter: bytes) -> tuple[int, int, bool] | None:
    """The first delimiter line in data[pos:end] (``pos`` a line start): its start, its end
    after the line ending, and whether it closes the multipart."""
    while True:
        found = find_dashed(data, delimiter, pos, end)
        if found < 0:
            return None
        if found == pos or data[found - 1] in _CRLF:
            line = _delimiter_line(data, found, end, delimiter)
            if line is not None:
                return line
        pos = found + 1


def find_dashed(data: bytes, needle: bytes, pos: int, end: int) -> int:
    """``data.find(needle, pos, end)`` for a needle that starts with a dash.

    Much faster where dashes are rare (base64 attachments, armored OpenPGP): a search for
    one byte runs at memchr speed, a search for several bytes at a fraction of it. Where a
    dash is not the needle, the next stretch is left to ``find``.
    """
    while True:
        dash = data.find(b"-", pos, end)
        if dash < 0 or data.startswith(needle, dash, end):
            return dash
        window = min(end, dash + FIND_WINDOW)
        found = data.find(needle, dash + 1, window)
        if found >= 0 or window == end:
            return found
        pos = max(dash + 1, window - len(needle) + 1)


def _delimiter_line(data: bytes, pos: int, end: int,
                    delimiter: bytes) -> tuple[int, int, bool] | None:
    """The delimiter line starting at ``pos``, if the line there is one."""
    if not data.startswith(delimiter, pos, end):
        return None
    at = pos + len(delimiter)
    closing = data.startswith(b"--", at, end)
    if closing:
        at += 2
    while at < end and data[at] in b" \t":
        at += 1
    if at == len(data):
        return pos, at, closing
    if at == end or data[at] not in _CRLF:
        return None
    return pos, at + (2 if data.startswith(_CRLF, at, end) else 1), closing


# --- an entity cut into spans ---------------------------------------------------------------


class SpanKind(Enum):
    HEAD = "head"  # an entity's header block with the blank line after it
    FRAME = "frame"  # multipart structure: preamble, delimiter lines, epilogue
    BODY = "body"  # a leaf entity's body


@dataclass(frozen=True)
class Span:
    """data[start:end] is one piece of the entity; ``entity`` is the entity whose header
    block or leaf body it is (None for a frame), ``leaf`` whether that entity is a leaf."""

    kind: SpanKind
    start: int
    end: int
    entity: RawEntity | None = None
    leaf: bool = False


def spans(data: bytes) -> Iterator[Span]:
    """``data`` (a message or an entity) as consecutive spans from its first byte to its last.

    Multiparts are followed into their parts, and a message/rfc822 (or message/global) body
    that is not base64 or quoted-printable into the message it holds. The line break before
    a delimiter line belongs to the delimiter (RFC 2046 5.1.1), so it is in a frame, not in
    the body of the part before it.
    """
    yield from _spans(data, 0, len(data), 0, "text/plain")


def _spans(data: bytes, start: int, end: int, depth: int, default_type: str) -> Iterator[Span]:
    entity = entity_at(data, start, end)
    if entity.headers.get("content-type") is None:
        entity.headers.set_default_type(default_type)
    content_type = entity.content_type
    regions: list[tuple[int, int]] | None = None
    inner_message = False
    if depth < MAX_SPAN_DEPTH:
        if content_type.startswith("multipart/"):
            regions = body_parts(data, entity)
        inner_message = (content_type in _MESSAGE_TYPES
                         and entity.transfer_encoding in _IDENTITY_CTES)
    leaf = regions is None and not inner_message
    yield Span(SpanKind.HEAD, start, entity.start, entity, leaf)
    if inner_message:
        yield from _spans(data, entity.start, entity.end, depth + 1, "text/plain")
    elif regions is not None:
        child_type = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        pos = entity.start
        for part_start, part_end in regions:
            if part_end < end:  # a delimiter line follows: its line break is not the part's
                eol = _TRAILING_EOL.search(data, max(part_start, part_end - 2), part_end)
                if eol is not None:
                    part_end = eol.start()
            yield Span(SpanKind.FRAME, pos, part_start)
            yield from _spans(data, part_start, part_end, depth + 1, child_type)
            pos = part_end
        yield Span(SpanKind.FRAME, pos, end)
    else:
        yield Span(SpanKind.BODY, entity.start, end, entity, True)
