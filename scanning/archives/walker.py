"""The bounded walk over an archive tree: each format module yields members, the walker
counts them, holds what must be opened again (nested archives, or everything if the caller
wants the contents) and goes down, one level deeper each time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Protocol

from scanning.archives.cab import cab_problem
from scanning.archives.compressed import COMPRESSED_KINDS, single_stream
from scanning.archives.limits import ArchiveLimits, ArchiveRejected, Budget, MemberSource
from scanning.archives.rar import rar_problem
from scanning.archives.seven_zip import seven_zip_problem
from scanning.archives.sniff import SNIFF_BYTES, sniff
from scanning.archives.tar import tar_members
from scanning.archives.zip import UnreadableZip, read_zip_directory, zip_members
from scanning.trail import Trail


class Surveyor(Protocol):
    """How a large member is looked at without holding it whole (``scanning.deferred``):
    only its head, its tail and whether ``armor`` occurs anywhere in it are kept, and from
    those the checks that want the members tell whether they could find anything in it."""

    from_bytes: int  # members smaller than this are held whole, as any other
    head_bytes: int
    tail_bytes: int
    armor: bytes

    def head_needs_whole_look(self, head: bytes, name: str) -> bool: ...

    def needs_whole_look(self, head: bytes, tail: bytes, armor: bool, name: str) -> bool: ...


class Walker:
    """One walk over an archive tree, with the byte and member budget of the whole walk."""

    def __init__(self, limits: ArchiveLimits, input_size: int, *, keep: bool,
                 surveyor: Surveyor | None = None) -> None:
        self._limits = limits
        self._budget = Budget(limits, input_size)
        self._keep = keep
        self._surveyor = surveyor if keep else None

    def walk(self, data: bytes, where: str, depth: int, *,
             top: bool = False) -> Iterator[tuple[str, bytes]]:
        kind = sniff(data, top=top)
        if kind is None:
            return
        if depth > self._limits.max_depth:
            raise ArchiveRejected(
                f"{where}: archives nested deeper than {self._limits.max_depth} levels")
        if kind == "zip-tail":
            try:
                read_zip_directory(data, self._limits.max_members, where)
            except UnreadableZip:
                return  # an end record by chance, not a zip: nothing to open here
            kind = "zip"
        if kind == "zip":
            members = zip_members(data, where, self._limits.max_members, self._budget)
        elif kind == "tar":
            members = tar_members(data, where, self._limits.max_members, self._budget)
        elif kind in COMPRESSED_KINDS:
            members = single_stream(kind, data, where, self._budget)
        else:
            reason = _directory_only(kind, data, self._limits)
            if reason is not None:
                raise ArchiveRejected(f"{where}: {reason}")
            return
        for path, source in members:
            yield from self._member(path, source, depth)

    def _member(self, where: str, source: MemberSource,
                depth: int) -> Iterator[tuple[str, bytes]]:
        """Read one member: held in memory only if wanted or if it is an archive itself; a
        large one that is wanted only for the checks is surveyed instead (``Surveyor``)."""
        self._budget.count(where)
        head = bytearray()
        stream = iter(source())
        for chunk in stream:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        nested = sniff(bytes(head[:SNIFF_BYTES]), top=False) is not None
        if not self._keep and not nested:
            for _ in stream:
                pass  # decompressed and counted, then dropped
            return
        if self._surveyor is not None and not nested:
            content = self._surveyed(where, head, stream, source, self._surveyor)
            if content is None:
                return  # surveyed: the checks have nothing to find in it
        else:
            content = _gathered(head, stream)
        del head
        if self._keep:
            yield where, content
        yield from self.walk(content, where, depth + 1)

    def _surveyed(self, where: str, head: bytearray, stream: Iterator[bytes],
                  source: MemberSource, surveyor: Surveyor) -> bytes | None:
        """The member whole, or None if it is large and its survey shows the checks could
        find nothing in it. Held up to ``from_bytes`` (or whole, if its head already needs
        the whole look); past that, only its head, tail and armor are kept, and if those
        ask for the whole after all, it is read once more from the start, not counted
        again against the limits."""
        name = where.rsplit("/", 1)[-1]
        # Tail and armor are followed from the first byte, so that nothing held has to be
        # read again (or copied) when the member turns out large.
        trail = Trail(surveyor.armor, surveyor.tail_bytes)
        trail.feed(head)
        held = io.BytesIO()
        held.write(head)
        first = b""
        surveying = False
        for chunk in stream:
            trail.feed(chunk)
            if surveying:
                continue
            held.write(chunk)
            if not first and held.tell() >= surveyor.head_bytes:
                with held.getbuffer() as view:
                    first = bytes(view[:surveyor.head_bytes])
                if surveyor.head_needs_whole_look(first, name):
                    return _gathered(held, stream)
            if held.tell() >= surveyor.from_bytes:
                # Large, and nothing in the head asks for the whole: surveyed from here on.
                surveying, held = True, io.BytesIO()
        if not surveying:
            content = held.getvalue()
            del held
            return content
        if not surveyor.needs_whole_look(first, trail.tail, trail.found, name):
            return None
        with self._budget.paused():
            return _gathered(io.BytesIO(), iter(source()))


def _gathered(start: bytes | bytearray | io.BytesIO, stream: Iterator[bytes]) -> bytes:
    """``start`` and the rest of ``stream`` in one bytes object. Into a buffer whose bytes
    object is handed out as it is (shrunk in place), not a bytearray copied at the end: the
    member whole twice for a moment."""
    if isinstance(start, io.BytesIO):
        held = start
    else:
        held = io.BytesIO()
        held.write(start)
    for chunk in stream:
        held.write(chunk)
    content = held.getvalue()
    del held
    return content


def _directory_only(kind: str, data: bytes, limits: ArchiveLimits) -> str | None:
    """Formats left to ClamAV: only their directory is checked here."""
    if kind == "7z":
        return seven_zip_problem(data, limits)
    if kind == "rar":
        return rar_problem(data)
    return cab_problem(data, limits)
