"""Large base64 attachments scanned without a decoded copy in memory.

A 50 MB attachment arrives as 68 MB of base64; decoding it whole for the scan put a third
large buffer beside the message and its parse (issue 17: the worker peaked at 3.1 times the
message). Most of the gateway's own checks read only the start of a part (magic numbers,
the first 8 KiB for "text", the first OpenPGP packet), clamd reads a stream anyway, and the
base64 stays in the raw message. So a large base64 leaf is first *surveyed*: decoded piece by
piece, keeping only its first 64 KiB and last 128 KiB and whether the OpenPGP armor line
occurs anywhere in it. If nothing there could make any check of ``MessageScanner._examine``
read further (``needs_whole_look``), the part is a ``DeferredPart``: clamd gets it decoded a
piece at a time, once more, and the gateway's checks are known to find nothing in it.
Anything else (an archive, a PDF, an Office file, an executable, encryption, a script name
on text, armor anywhere, base64 that is not pure) is decoded whole as before; where the
head alone decides that (most large attachments are PDFs and zips), the survey ends after
its first piece.

The two passes cost more CPU than one whole decode (for 50 MB here, about 75 ms for the
survey and 80 ms for clamd's pieces against 60 ms whole; clamd's own scan takes far
longer) and save the decoded size in memory. Only parts of ``DEFER_FROM`` decoded bytes
and more are surveyed: below it the copy is cheap and the second pass is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pybase64

from scanning.archives.sniff import sniff
from scanning.content_types import blocked_type
from scanning.encrypted import ARMOR, head_may_show_encryption
from scanning.trail import Trail

DEFER_FROM = 16 * 2**20  # decoded bytes
HEAD = 1 << 16
# find_eocd looks at the last 65,557 bytes (the record and the longest comment).
TAIL = 1 << 17
_EOCD = b"PK\x05\x06"
# Base64 text decoded per piece: about 768 KiB out.
_PIECE = 1 << 20
# Every kind blocked_type knows, whatever the configuration blocks: a part of a kind that
# might be blocked is looked at whole.
_EVERY_KIND = ("executable", "office-macro", "script")


class _NotPure(ValueError):
    """The text is not base64 alone (line breaks aside), or not of the promised size."""


@dataclass(frozen=True)
class Base64Body:
    """A base64 body where it stands in the raw message (``raw[start:end]``), and the size
    it promises decoded."""

    raw: bytes
    start: int
    end: int
    size: int

    def pieces(self) -> Iterator[bytes]:
        """The body decoded a piece at a time. Raises ``_NotPure`` at the first character
        outside the alphabet (CR and LF aside), padding before the end, or a size other than
        promised: then the stdlib's lenient decoding is the answer, not this."""
        view = memoryview(self.raw)
        carry = b""
        total = 0
        for at in range(self.start, self.end, _PIECE):
            last = at + _PIECE >= self.end
            text = carry + bytes(view[at:min(self.end, at + _PIECE)]).translate(None, b"\r\n")
            cut = len(text) if last else len(text) - len(text) % 4
            carry = text[cut:]
            body = text[:cut]
            padding = len(body) - len(body.rstrip(b"="))
            if b"=" in body[:len(body) - padding] or (padding and not last) or padding > 2:
                raise _NotPure
            try:
                decoded = pybase64.b64decode(body, validate=True)
            except ValueError:  # binascii.Error is one
                raise _NotPure from None
            total += len(decoded)
            if decoded:
                yield decoded
        if carry or total != self.size:
            raise _NotPure

    def whole(self) -> bytes:
        """Decoded in one buffer (what the scan did before), for a reader that needs it."""
        decoded = pybase64.b64decode(memoryview(self.raw)[self.start:self.end], validate=False)
        assert len(decoded) == self.size  # pieces() read it as pure base64 of this size
        return decoded


@dataclass(frozen=True)
class Survey:
    head: bytes
    tail: bytes
    armor: bool


def survey(body: Base64Body, filename: str | None) -> Survey | None:
    """What ``needs_whole_look`` needs, from one pass; None if the body is not pure base64
    of its promised size, or as soon as its head alone needs the whole look (a PDF, a zip,
    an Office file: most large attachments, which need not be read twice)."""
    head = bytearray()
    trail = Trail(ARMOR, TAIL)
    try:
        for piece in body.pieces():
            if len(head) < HEAD:
                head += piece[:HEAD - len(head)]
                if len(head) == HEAD and head_needs_whole_look(bytes(head), filename):
                    return None
            trail.feed(piece)
    except _NotPure:
        return None
    return Survey(bytes(head), trail.tail, trail.found)


def needs_whole_look(found: Survey, filename: str | None) -> bool:
    """Whether some check of the scanner could read beyond the surveyed head and tail, or
    find something there: then the part is decoded whole and examined as any other.

    False means, for the whole data: ``blocked_type`` is None whatever is blocked (without
    an MZ, OLE2 or zip start it reads only the first 8 KiB), ``encryption_of`` is None
    (``head_may_show_encryption``, and no armor anywhere), and ``iter_members`` has nothing
    to open (no archive magic at the start, no zip end record in the tail).
    """
    return found.armor or head_needs_whole_look(found.head, filename) or _EOCD in found.tail


def head_needs_whole_look(head: bytes, filename: str | None) -> bool:
    """The part of ``needs_whole_look`` that the first ``HEAD`` bytes decide."""
    return (head.startswith((b"MZ", b"ZM", b"PK", b"\xd0\xcf\x11\xe0"))
            or blocked_type(head, filename, _EVERY_KIND) is not None
            or head_may_show_encryption(head)
            or sniff(head, top=False) is not None)


@dataclass(frozen=True)
class DeferredPart:
    """A leaf part (as ``scanning.parts.Part``) whose decoded bytes are not held: clamd
    reads ``body.pieces()``; ``data`` decodes it whole for any other reader."""

    path: str
    content_type: str
    filename: str | None
    body: Base64Body
    section: str = ""

    @property
    def data(self) -> bytes:
        return self.body.whole()


def deferred(path: str, content_type: str, filename: str | None, section: str,
             body: Base64Body) -> DeferredPart | None:
    """The part as a ``DeferredPart`` if it is large, pure base64 and ``needs_whole_look``
    says no; else None (decode it whole)."""
    if body.size < DEFER_FROM:
        return None
    found = survey(body, filename)
    if found is None or needs_whole_look(found, filename):
        return None
    return DeferredPart(path, content_type, filename, body, section)


class _MemberSurvey:
    """The survey above for archive members (``scanning.archives.Surveyor``): the scanner
    holds a member only for ``blocked_type`` and ``encryption_of``, which answer from the
    same head, tail and armor as for a part. A member of ``DEFER_FROM`` bytes and more that
    needs no whole look is not held (a small zip of compressible text inflates to up to
    ``max_uncompressed_bytes``); clamd reads the archive itself."""

    from_bytes = DEFER_FROM
    head_bytes = HEAD
    tail_bytes = TAIL
    armor = ARMOR

    def head_needs_whole_look(self, head: bytes, name: str) -> bool:
        return head_needs_whole_look(head, name)

    def needs_whole_look(self, head: bytes, tail: bytes, armor: bool, name: str) -> bool:
        return needs_whole_look(Survey(head, tail, armor), name)


MEMBER_SURVEY = _MemberSurvey()
