"""The bounded walk over an archive tree: each format module yields members, the walker
counts them, holds what must be opened again (nested archives, or everything if the caller
wants the contents) and goes down, one level deeper each time."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from scanning.archives.cab import cab_problem
from scanning.archives.compressed import COMPRESSED_KINDS, single_stream
from scanning.archives.limits import ArchiveLimits, ArchiveRejected, Budget
from scanning.archives.rar import rar_problem
from scanning.archives.seven_zip import seven_zip_problem
from scanning.archives.sniff import SNIFF_BYTES, sniff
from scanning.archives.tar import tar_members
from scanning.archives.zip import UnreadableZip, read_zip_directory, zip_members


class Walker:
    """One walk over an archive tree, with the byte and member budget of the whole walk."""

    def __init__(self, limits: ArchiveLimits, input_size: int, *, keep: bool) -> None:
        self._limits = limits
        self._budget = Budget(limits, input_size)
        self._keep = keep

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
        for path, chunks in members:
            yield from self._member(path, chunks, depth)

    def _member(self, where: str, chunks: Iterable[bytes],
                depth: int) -> Iterator[tuple[str, bytes]]:
        """Read one member: held in memory only if wanted or if it is an archive itself."""
        self._budget.count(where)
        head = bytearray()
        stream = iter(chunks)
        for chunk in stream:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        if self._keep or sniff(bytes(head[:SNIFF_BYTES]), top=False) is not None:
            # Into a buffer whose bytes object is handed out as it is (shrunk in place),
            # not a bytearray copied at the end: the member whole twice for a moment.
            held = io.BytesIO()
            held.write(head)
            del head
            for chunk in stream:
                held.write(chunk)
            content = held.getvalue()
            del held
            if self._keep:
                yield where, content
            yield from self.walk(content, where, depth + 1)
        else:
            for _ in stream:
                pass  # decompressed and counted, then dropped


def _directory_only(kind: str, data: bytes, limits: ArchiveLimits) -> str | None:
    """Formats left to ClamAV: only their directory is checked here."""
    if kind == "7z":
        return seven_zip_problem(data, limits)
    if kind == "rar":
        return rar_problem(data)
    return cab_problem(data, limits)
