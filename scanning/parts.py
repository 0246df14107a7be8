"""Every leaf part of a message, decoded, for the scanner; and the MIME limits.

ClamAV sees what the gateway hands it, so the gateway hands it each leaf part decoded from
base64, quoted-printable or uuencode (including uuencoded blocks inside plain text bodies and
the parts of attached messages and of opaque-signed S/MIME), and the whole decoded message as
one stream besides (``decoded_message``).

Limits: every MIME entity counts as a part, containers and the top-level one included; depth
is the number of containers (multiparts, attached messages, opaque-signed S/MIME) around an
entity, 0 for the top level. Walking is iterative (an explicit stack), so no nesting reaches
Python's recursion limit here. The stdlib parser itself does recurse, once per nesting level,
and reads every line against every enclosing boundary: it fails with RecursionError near 1,000
levels and slows down long before. ``check_raw_structure`` therefore measures parts and depth
on the raw bytes, in linear time and before the parser runs, and the parse stage should call it
first.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any, Protocol

import pybase64
from asn1crypto import cms  # type: ignore[import-untyped]

from crypto.mime_policy import MIME_POLICY
from crypto.mime_qp import decode_qp
from scanning.deferred import DEFER_FROM, Base64Body, DeferredPart, deferred
from scanning.residue import find_body

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "uue", "x-uue")
# Only the Content-Type header of a raw entity matters to the structure check; a header block
# larger than this is cut off there (the SMTP edge bounds headers far below it anyway).
_MAX_RAW_HEADER = 256 * 1024


class _ScanningLimits(Protocol):
    """The fields of ``gateway.settings.ScanningSettings`` used here."""

    @property
    def max_mime_parts(self) -> int: ...
    @property
    def max_mime_depth(self) -> int: ...


@dataclass(frozen=True)
class MimeLimits:
    max_parts: int = 500
    max_depth: int = 20

    @classmethod
    def from_settings(cls, scanning: _ScanningLimits) -> MimeLimits:
        return cls(max_parts=scanning.max_mime_parts, max_depth=scanning.max_mime_depth)


class TooComplex(Exception):
    """The message breaks a MIME limit or hides a part that cannot be read: UNSCANNABLE."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Part:
    """One decoded leaf part.

    ``path`` names it for people and logs: the IMAP-style section, then the disposition and
    file name if there are any, else the content type ("1.2 attachment report.pdf"). Parts cut
    out of a uuencoded text body are ``<section>.uu<n>``.
    """

    path: str
    content_type: str
    filename: str | None
    data: bytes
    section: str = ""


# --- the structure of raw bytes, before parsing -----------------------------------------------

_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
# What the stdlib's feedparser takes for a header line; the first other line ends the block.
_HEADER_LINE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")


class _DashLines:
    """Where the next line that starts with "--" starts, found with ``bytes.find``.

    A regular expression for "a line break, then two dashes" tried every position of a
    body (6.4 ms per MB); ``find`` runs at memory speed. Lines end in LF or CRLF almost
    always, so "\n--" is looked for first and "\r--" (a line ending in a lone CR) only
    before that hit. Each search only moves forward, so the message is read at most once
    by each, however many lines start with dashes.
    """

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._lf = -1  # the last "\n--" found (len(raw): none left); -1 before the first
        self._cr = -1  # the last "\r--" found, or -1
        self._cr_none_before = 0  # no "\r--" starts between the last search and here

    def after(self, pos: int) -> int | None:
        """The position of the "--" of the first line break at or after ``pos`` that is
        followed by "--"; None if there is none."""
        raw, size = self._raw, len(self._raw)
        if self._lf < pos or self._cr < pos:
            # memchr finds the first dash at once (base64 has none): no line that starts
            # with dashes can start before the line break in front of it.
            dash = raw.find(b"-", pos)
            if dash < 0:
                self._lf, self._cr, self._cr_none_before = size, -1, size
                return None
            pos = max(pos, dash - 1)
        if self._lf < pos:
            found = raw.find(b"\n--", pos)
            self._lf = found if found >= 0 else size
        if self._cr < pos:
            start = max(pos, self._cr_none_before)
            found = raw.find(b"\r--", start, self._lf) if start < self._lf else -1
            self._cr = found
            if found < 0:
                self._cr_none_before = max(start, self._lf)
        best = self._cr if 0 <= self._cr < self._lf else self._lf
        return None if best >= size else best + 1


_MISSING = object()


class _FieldsOnce(EmailMessage):
    """A header block read by ``check_raw_structure``: each field is parsed once. Under
    ``policy.default`` every ``get()`` runs the header value parser again, and the check
    asks for Content-Type three times a part (is there one, its type, its boundary); the
    block never changes, so the first answer is every later one."""

    def get(self, name: str, failobj: Any = None) -> Any:
        fields: dict[str, Any] = self.__dict__.setdefault("_fields_once", {})
        key = name.lower()
        if key not in fields:
            fields[key] = super().get(name, _MISSING)
        value = fields[key]
        return failobj if value is _MISSING else value

    def set_raw(self, name: str, value: Any) -> None:
        # The parser adds the fields before anyone asks; should that ever change, a field
        # added later is read anew (and so below for every other change).
        self.__dict__.pop("_fields_once", None)
        super().set_raw(name, value)

    def __setitem__(self, name: str, val: Any) -> None:
        self.__dict__.pop("_fields_once", None)
        super().__setitem__(name, val)

    def __delitem__(self, name: str) -> None:
        self.__dict__.pop("_fields_once", None)
        super().__delitem__(name)


@dataclass
class _OpenMultipart:
    delimiter: bytes  # "--" + boundary
    depth: int
    digest: bool


# A leaf body shorter than this is left to the parser: setting it aside saves less than it
# costs.
_MIN_LEAF_BODY = 512


@dataclass(frozen=True)
class RawStructure:
    """What ``raw_structure`` learned from a message's bytes.

    ``leaf_bodies``: where the bodies of leaf parts stand that a delimiter line ends, as
    (start, end) in the raw bytes, in document order; ``end`` is where the line break before
    the delimiter line starts (RFC 2046 5.1.1: it belongs to the delimiter), so a span is
    exactly the text the parser holds as that part's payload. Only bodies of at least
    ``_MIN_LEAF_BODY`` bytes of parts that are neither multipart nor message, whose header
    block a blank line ended. ``gateway.mime.parsed.parse_message`` hands them to the parser
    as one short line each, instead of line by line.
    """

    problem: str | None
    leaf_bodies: tuple[tuple[int, int], ...] = ()


def check_raw_structure(raw: bytes, limits: MimeLimits) -> str | None:
    """Why the raw message ``raw`` breaks the MIME limits, or None; linear time."""
    return raw_structure(raw, limits).problem


def raw_structure(raw: bytes, limits: MimeLimits) -> RawStructure:
    """The MIME limits checked on ``raw`` (``problem``: why it breaks them, or None), and
    where its leaf bodies stand; linear time.

    Follows boundaries as the stdlib parser does (lines split at CR, LF or CRLF; a boundary
    line closes every multipart opened inside it), so what it measures is what the parser
    would build.
    """
    bodies: list[tuple[int, int]] = []

    def answer(problem: str | None = None) -> RawStructure:
        return RawStructure(problem, tuple(bodies) if problem is None else ())

    stack: list[_OpenMultipart] = []
    parts = 1
    depth = 0
    in_headers = True
    default_type = "text/plain"
    header = bytearray()
    header_cut = False
    leaf_start: int | None = None  # where the body of the leaf being read started
    pos = 0
    size = len(raw)
    dash_lines = _DashLines(raw)
    while pos < size:
        if not in_headers:
            if not stack:
                return answer()  # a leaf body with nothing open around it: nothing more to find
            if not raw.startswith(b"--", pos):
                found = dash_lines.after(pos)
                if found is None:
                    return answer()
                pos = found
        match = _LINE.match(raw, pos)
        assert match is not None  # the pattern matches the empty string too
        line = match.group()
        pos = match.end()
        if not line:
            break
        if line.startswith(b"--") and stack:
            stripped = line.rstrip(b"\r\n").rstrip(b" \t")
            hit = _boundary_hit(stripped, stack)
            if hit is not None:
                if leaf_start is not None:
                    line_start = match.start()
                    end = line_start - (2 if raw.startswith(b"\r\n", line_start - 2) else 1)
                    if end - leaf_start >= _MIN_LEAF_BODY:
                        bodies.append((leaf_start, end))
                    leaf_start = None
                index, closing = hit
                opened = stack[index]
                del stack[index + (0 if closing else 1):]
                if closing:
                    in_headers = False
                    continue
                parts += 1
                depth = opened.depth + 1
                if parts > limits.max_parts:
                    return answer(f"more than {limits.max_parts} MIME parts")
                if depth > limits.max_depth:
                    return answer(f"MIME nesting deeper than {limits.max_depth} levels")
                in_headers = True
                default_type = "message/rfc822" if opened.digest else "text/plain"
                header.clear()
                header_cut = False
                continue
        if not in_headers:
            continue
        if line.strip(b"\r\n") and _HEADER_LINE.match(line):
            if len(header) < _MAX_RAW_HEADER:
                header += line
            else:
                header_cut = True
            continue
        # The header block ended: what it declares decides what the body is.
        in_headers = False
        entity = BytesHeaderParser(_FieldsOnce, policy=MIME_POLICY).parsebytes(
            bytes(header))
        header.clear()
        content_type = entity.get_content_type() if entity.get("content-type") \
            else default_type
        if content_type.startswith("multipart/"):
            boundary = entity.get_boundary()
            try:
                delimiter = None if boundary is None else \
                    b"--" + boundary.encode("ascii", "surrogateescape")
            except UnicodeEncodeError:
                # Bytes the header parser replaced (U+FFFD): no line of the body can match
                # such a boundary, for the parser neither, so there is nothing to follow.
                delimiter = None
            if delimiter is not None:
                stack.append(_OpenMultipart(delimiter, depth, content_type == "multipart/digest"))
        elif content_type.startswith("message/") and content_type != "message/delivery-status":
            # An attached message: its own header block starts right here.
            parts += 1
            depth += 1
            if parts > limits.max_parts:
                return answer(f"more than {limits.max_parts} MIME parts")
            if depth > limits.max_depth:
                return answer(f"MIME nesting deeper than {limits.max_depth} levels")
            in_headers = True
            default_type = "text/plain"
            header_cut = False
        elif (stack and not header_cut and not content_type.startswith("message/")
              and not line.strip(b"\r\n")):
            # A leaf whose header block a blank line ended: its body starts after it.
            leaf_start = pos
        if line.strip(b"\r\n"):
            # A line that is no header ends the block and, as in the parser, is read again as
            # the first line of what follows (it may be the first boundary).
            pos = match.start()
    return answer()


def _boundary_hit(stripped: bytes, stack: list[_OpenMultipart]) -> tuple[int, bool] | None:
    # The innermost multipart first, as the parser's stack of boundary matchers has it.
    for index in range(len(stack) - 1, -1, -1):
        delimiter = stack[index].delimiter
        if stripped == delimiter:
            return index, False
        if stripped == delimiter + b"--":
            return index, True
    return None


# --- the parsed tree --------------------------------------------------------------------------


@dataclass
class _Node:
    entity: Message
    section: str  # "" for the top level
    depth: int
    # An attached message's body that is not multipart is its section + ".1" (IMAP numbering).
    wrapped: bool = False


def leaf_parts(message: Message, limits: MimeLimits) -> Iterator[Part]:
    """The decoded leaf parts of ``message``, in document order.

    Raises ``TooComplex`` before yielding anything if the parsed tree breaks a limit; parts that
    only decoding reveals (opaque-signed content, uuencoded blocks) count too and may raise it
    later, so a caller that gets TooComplex must discard what it scanned so far.
    """
    for leaf in scan_leaves(message, limits):
        part = leaf.part
        # Without the raw message nothing is deferred; whole all the same if it were.
        yield part if isinstance(part, Part) else Part(
            part.path, part.content_type, part.filename, part.data, part.section)


@dataclass(frozen=True)
class Leaf:
    """A decoded leaf part, and the body it was decoded from if the decoding shows ClamAV
    every byte of that body.

    ``body`` is the entity's body as the parser holds it (its text for base64 and
    quoted-printable, the bytes themselves for 7bit, 8bit and binary), set only when
    scanning ``part.data`` is as good as scanning the body itself: base64 whose every
    character is in the alphabet (the decoder skips anything else, so hidden text would go
    unseen), quoted-printable, or no transfer encoding, with one unambiguous Content-Type
    and Content-Transfer-Encoding (a reader that takes the other of two headers decodes
    the body differently). ``None`` otherwise (uuencode, whose decoder keeps only the first
    block; delivery-status fields; uuencoded blocks cut out of a text; anything unusual).
    A caller may then leave such a body out of a second look at the whole message
    (``scanning.residue``).
    """

    part: Part | DeferredPart
    body: str | bytes | None = None
    # Where ``body`` stands in the raw message, if it was given and the body found in it.
    span: tuple[int, int] | None = None


def scan_leaves(message: Message, limits: MimeLimits,
                raw: bytes | None = None) -> Iterator[Leaf]:
    """``leaf_parts`` with the body each part stands for (see ``Leaf``); same limits.

    With ``raw``, the bytes ``message`` was parsed from, each such body is also found in
    ``raw`` (compared byte for byte, ``scanning.residue.find_body``), and plain base64 is
    decoded from there.
    """
    counter = _Counter(limits)
    for _ in _nodes(message, counter, decode=False):
        pass
    yield from _decoded_leaves(message, _Counter(limits), raw)


def decoded_message(message: Message, limits: MimeLimits, max_bytes: int) -> bytes:
    """All decoded leaf parts one after another, to be scanned as one stream.

    Joined without separators: a signature split across two parts is found in the join.
    Raises ``TooComplex`` when the result would exceed ``max_bytes``.
    """
    joined = bytearray()
    for part in leaf_parts(message, limits):
        if len(joined) + len(part.data) > max_bytes:
            raise TooComplex(f"decoded message larger than {max_bytes} bytes")
        joined += part.data
    return bytes(joined)


class _Counter:
    def __init__(self, limits: MimeLimits) -> None:
        self.limits = limits
        self.parts = 0

    def add(self, depth: int) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise TooComplex(f"more than {self.limits.max_parts} MIME parts")
        if depth > self.limits.max_depth:
            raise TooComplex(f"MIME nesting deeper than {self.limits.max_depth} levels")


def _nodes(message: Message, counter: _Counter, *, decode: bool) -> Iterator[_Node]:
    """Every leaf entity, depth first, with an explicit stack; containers are counted."""
    stack = [_Node(message, "", 0)]
    while stack:
        node = stack.pop()
        counter.add(node.depth)
        entity = node.entity
        content_type = entity.get_content_type()
        children: list[_Node] = []
        if entity.is_multipart() and content_type != "message/delivery-status":
            payload = entity.get_payload()
            assert isinstance(payload, list)
            if content_type.startswith("message/"):
                children = [_Node(inner, node.section, node.depth + 1, wrapped=True)
                            for inner in payload if isinstance(inner, Message)]
            else:
                prefix = f"{node.section}." if node.section else ""
                children = [_Node(sub, f"{prefix}{number}", node.depth + 1)
                            for number, sub in enumerate(payload, 1)
                            if isinstance(sub, Message)]
        elif decode and _is_opaque_signed(entity, content_type):
            inner = _opaque_signed_content(entity, counter, node.depth)
            if inner is not None:
                children = [_Node(inner, _leaf_section(node), node.depth + 1, wrapped=True)]
        if children:
            stack.extend(reversed(children))
        else:
            yield node


def _leaf_section(node: _Node) -> str:
    if not node.section:
        return "1"
    return f"{node.section}.1" if node.wrapped else node.section


def _decoded_leaves(message: Message, counter: _Counter,
                    raw: bytes | None) -> Iterator[Leaf]:
    cursor = 0  # bodies come in document order: each is looked for after the one before
    for node in _nodes(message, counter, decode=True):
        entity = node.entity
        section = _leaf_section(node)
        content_type = entity.get_content_type()
        filename = entity.get_filename()
        label = " ".join(filter(None, (section, entity.get_content_disposition(), filename)))
        path = label if filename else f"{label} {content_type}"
        large = _large_base64(entity, raw, content_type)
        late = None if large is None else deferred(path, content_type, filename, section,
                                                   large)
        if late is not None:
            # clamd reads it decoded piece by piece; its span is left out of the residue.
            cursor = late.body.end
            yield Leaf(late, None, (late.body.start, late.body.end))
            continue
        data, body, span = _decode_with_body(entity, raw, cursor)
        if span is not None:
            cursor = span[1]
        yield Leaf(Part(path, content_type, filename, data, section), body, span)
        if content_type == "text/plain":
            for number, (name, block) in enumerate(uuencoded_blocks(data), 1):
                counter.add(node.depth + 1)
                uu_section = f"{section}.uu{number}"
                yield Leaf(Part(f"{uu_section} attachment {name}", "application/octet-stream",
                                name, block, uu_section))


_IDENTITY_ENCODINGS = ("", "7bit", "8bit", "binary")


_Span = tuple[int, int]


def _decode_with_body(entity: Message, raw: bytes | None,
                      cursor: int) -> tuple[bytes, str | bytes | None, _Span | None]:
    """The decoded body, the body it fully stands for (``Leaf.body``) or None, and where
    that body stands in ``raw`` (looked for from ``cursor`` on) or None."""
    encoding = str(entity.get("content-transfer-encoding", "")).strip().lower()
    unread = _unread_span(entity, raw)
    if unread is not None and raw is not None and _unambiguous(entity):
        decoded = _decode_unread(raw, unread, encoding)
        if decoded is not None:
            return decoded, None, unread
    if encoding == "base64" and not entity.is_multipart() and _unambiguous(entity):
        text = _ascii_payload(entity)
        if text is not None:
            span = find_body(raw, text, cursor) if raw is not None and text else None
            decoded = _pure_base64(text, raw if span is not None else None, span)
            if decoded is not None:
                return decoded, text, span
        return decode_body(entity), None, None
    data, body = _decode_covering(entity, encoding)
    if raw is None or not body:
        return data, body, None
    return data, body, find_body(raw, body, cursor)


def _decode_covering(entity: Message, encoding: str) -> tuple[bytes, str | bytes | None]:
    if entity.is_multipart() or not _unambiguous(entity):
        return decode_body(entity), None
    if encoding == "quoted-printable":
        text = _ascii_payload(entity)
        # Every byte of quoted-printable comes out as itself or as the byte it escapes.
        # With 8-bit bytes in it the parser hands back a charset-decoded copy instead of
        # the text as it stands: then the body is not known here.
        if text is not None:
            # What the stdlib does (quopri.decodestring is a2b_qp), without first copying
            # the text into bytes, and in pieces (crypto.mime_qp).
            return decode_qp(text), text
        return decode_body(entity), None
    data = decode_body(entity)
    if encoding in _IDENTITY_ENCODINGS:
        return data, data  # the bytes as they arrived
    return data, None


def _unread_span(entity: Message, raw: bytes | None) -> _Span | None:
    """Where in ``raw`` the body of ``entity`` stands if the parser left it unread there
    (``gateway.mime.parsed``: a large body is read when asked for), else None."""
    unread = getattr(entity, "unread_body", None)
    if unread is None or raw is None or unread[0] is not raw:
        return None
    return unread[1], unread[2]


def _large_base64(entity: Message, raw: bytes | None, content_type: str) -> Base64Body | None:
    """A base64 body the parser left unread in ``raw``, too large to decode whole without
    need (scanning.deferred); None for anything else."""
    if raw is None or content_type == "text/plain":
        return None  # uuencoded blocks are looked for in a plain text's decoded whole
    encoding = str(entity.get("content-transfer-encoding", "")).strip().lower()
    span = _unread_span(entity, raw)
    if encoding != "base64" or span is None or span[1] - span[0] < DEFER_FROM \
            or not _unambiguous(entity):
        return None
    size = _promised_base64_size(raw, span)
    return None if size is None else Base64Body(raw, span[0], span[1], size)


def _promised_base64_size(raw: bytes, span: _Span) -> int | None:
    """What _pure_base64 counts on the text, counted on the bytes it was made of."""
    start, end = span
    crlf = raw.count(b"\r\n", start, end)
    return _promised_size(end - start, crlf, 0 if crlf else raw.count(b"\n", start, end),
                          raw[max(start, end - 8):end])


def _decode_unread(raw: bytes, span: _Span, encoding: str) -> bytes | None:
    """The body at ``span`` decoded as ``_decode_with_body`` decodes the parser's text of
    it, straight from the raw bytes; None where only the text's way gives the answer."""
    start, end = span
    if encoding == "base64":
        size = _promised_base64_size(raw, span)
        return None if size is None else _base64_from_raw(raw, span, size)
    if encoding == "quoted-printable" and _ascii_bytes(raw, start, end):
        return decode_qp(raw, start, end)
    return None


def _ascii_bytes(raw: bytes, start: int, end: int, step: int = 1 << 18) -> bool:
    return all(raw[at:min(end, at + step)].isascii() for at in range(start, end, step))


def _ascii_payload(entity: Message) -> str | None:
    """The body of a leaf as the parser holds it, if that is ASCII text; else None.

    What ``get_payload()`` returns then, the very object: it first encodes the whole text
    to look for bytes that are not ASCII, a copy of the body for nothing (50 MB for a
    large attachment).
    """
    payload = entity._payload  # type: ignore[attr-defined]
    return payload if isinstance(payload, str) and payload.isascii() else None


def _unambiguous(entity: Message) -> bool:
    if len(entity.get_all("content-transfer-encoding", [])) > 1:
        return False
    types = entity.get_all("content-type", [])
    if len(types) > 1:
        return False
    # A Content-Type the parser could not read falls back to text/plain; another reader
    # may read it (e.g. as a multipart), so the body is not what it seems.
    return not types or \
        str(types[0]).split(";", 1)[0].strip().lower() == entity.get_content_type()


def _pure_base64(text: str, raw: bytes | None, span: _Span | None) -> bytes | None:
    """``text`` decoded if it is nothing but base64 lines with padding at the end only.

    The stdlib's own base64 path (splitting the lines, joining them, checking the alphabet
    with a regular expression) makes several copies of the body and takes about three times
    as long as binascii, which decodes straight from the text, skipping line breaks; with
    the raw message at hand, pybase64 (C with SIMD) decodes the same bytes from there in
    about a quarter of binascii's time. Whether every character counted is told by the
    length of the result: either decoder skips a character outside the alphabet, and stops
    at (or skips) padding in the middle, and each makes the result shorter than the
    characters promise. Anything else (None) goes the stdlib's way.
    """
    crlf = text.count("\r\n")
    size = _promised_size(len(text), crlf, 0 if crlf else text.count("\n"),
                          text[-8:].encode("ascii"))
    if size is None:
        return None
    if span is not None and raw is not None:
        return _base64_from_raw(raw, span, size)
    try:
        decoded = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == size else None


def _promised_size(length: int, crlf: int, lf: int, tail: bytes) -> int | None:
    """The decoded size that base64 of ``length`` characters promises, with ``crlf`` CRLF
    line breaks (or else ``lf`` LF ones) and the padding in ``tail`` (its last bytes); None
    where it cannot be whole base64.

    Line breaks are CRLF or LF throughout in mail as written; one count finds them. A lone
    CR or LF among them is taken for a character, which the decoder does not count: the
    lengths then disagree, and the stdlib decodes.
    """
    characters = length - (2 * crlf if crlf else lf)
    tail = tail.rstrip(b"\r\n")
    padding = len(tail) - len(tail.rstrip(b"="))
    if characters % 4 or padding > 2:
        return None
    return characters // 4 * 3 - padding


def _base64_from_raw(raw: bytes, span: _Span, size: int) -> bytes | None:
    """The base64 at ``span`` of ``raw`` decoded by pybase64, if it gives ``size`` bytes (a
    byte outside the alphabet is skipped, so the lengths disagree then)."""
    try:
        decoded = pybase64.b64decode(memoryview(raw)[span[0]:span[1]], validate=False)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == size else None


def decode_body(entity: Message) -> bytes:
    """The body of a leaf entity with its Content-Transfer-Encoding undone."""
    encoding = str(entity.get("content-transfer-encoding", "")).strip().lower()
    if encoding in _UU_ENCODINGS:
        raw = entity.get_payload(decode=False)
        text = raw.encode("ascii", "surrogateescape") if isinstance(raw, str) else b""
        blocks = list(uuencoded_blocks(text))
        return blocks[0][1] if blocks else text
    if entity.is_multipart():
        # message/delivery-status: blocks of fields, which the parser keeps as messages.
        payload = entity.get_payload()
        assert isinstance(payload, list)
        return b"".join(block.as_bytes() for block in payload if isinstance(block, Message))
    # base64 and quoted-printable: the stdlib decodes them leniently, as mail clients do;
    # 7bit, 8bit and binary bodies come back as the bytes that arrived.
    data = entity.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# --- uuencode ---------------------------------------------------------------------------------

_UU_BEGIN = re.compile(rb"^begin(?:-base64)? +[0-7]{1,4} +([^\r\n]+?)[ \t]*\r?$", re.MULTILINE)
_UU_END = re.compile(rb"^end[ \t]*\r?$", re.MULTILINE)


def uuencoded_blocks(text: bytes) -> Iterator[tuple[str, bytes]]:
    """The ``begin <mode> <name>`` ... ``end`` blocks in ``text``, decoded.

    Lenient like uudecode: a missing ``end`` takes the rest of the text, broken lines are cut
    to the length their first character announces.
    """
    pos = 0
    while (begin := _UU_BEGIN.search(text, pos)) is not None:
        name = begin.group(1).decode("utf-8", "replace")
        end = _UU_END.search(text, begin.end())
        stop = end.start() if end is not None else len(text)
        yield name, _uudecode(text[begin.end():stop])
        pos = end.end() if end is not None else len(text)


def _uudecode(body: bytes) -> bytes:
    out = bytearray()
    for line in body.splitlines():
        if not line.strip() or line.strip() == b"`":
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Encoders that pad lines oddly: the first character says how many bytes follow.
            count = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(line[:count])
            except binascii.Error:
                continue
    return bytes(out)


# --- opaque-signed S/MIME ---------------------------------------------------------------------


def _is_opaque_signed(entity: Message, content_type: str) -> bool:
    if content_type == "application/octet-stream":
        # Some clients label S/MIME by its file name only.
        filename = (entity.get_filename() or "").lower()
        return filename.endswith(".p7m")
    if content_type not in _SMIME_TYPES:
        return False
    smime_type = str(entity.get_param("smime-type", "") or "").lower()
    # Old clients leave smime-type out; the CMS content type then tells (checked on reading).
    return smime_type in ("signed-data", "")


def _opaque_signed_content(entity: Message, counter: _Counter, depth: int) -> Message | None:
    """The MIME entity an opaque-signed part carries, parsed; None if it is not signed-data.

    Signatures are the verify stage's business; here only the content matters, because it
    would otherwise reach ClamAV as DER around base64 text that it cannot look into.
    """
    declared = str(entity.get_param("smime-type", "") or "").lower() == "signed-data"
    try:
        info = cms.ContentInfo.load(decode_body(entity))
        if info["content_type"].native != "signed_data":
            if declared:
                raise TooComplex("opaque-signed S/MIME part is not signed-data")
            return None
        content = info["content"]["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        if declared:
            raise TooComplex("unreadable opaque-signed S/MIME part") from exc
        return None
    if not isinstance(content, bytes):
        raise TooComplex("opaque-signed S/MIME part without content")
    # The inner entity is parsed here, so it gets the raw check the parse stage gives a
    # message: with what is left of the budget, and nested below this part.
    remaining = MimeLimits(max_parts=max(counter.limits.max_parts - counter.parts, 1),
                           max_depth=max(counter.limits.max_depth - depth - 1, 0))
    reason = check_raw_structure(content, remaining)
    if reason is not None:
        raise TooComplex(f"{reason} (inside opaque-signed S/MIME)")
    parsed: Message = BytesParser(policy=entity.policy).parsebytes(content)
    return parsed
