"""The limits an archive is walked within, the budget that counts a walk against them, and
the refusal when one is broken."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

# A member's content in chunks, read from the start on each call (the walker reads a large
# member a second time only if its survey asks for the whole: scanning.deferred).
MemberSource = Callable[[], Iterator[bytes]]


class _ScanningLimits(Protocol):
    """The fields of ``gateway.settings.ScanningSettings`` used here (scanning imports nothing
    from gateway)."""

    @property
    def max_uncompressed_bytes(self) -> int: ...
    @property
    def max_compression_ratio(self) -> int: ...
    @property
    def max_archive_members(self) -> int: ...
    @property
    def max_archive_depth(self) -> int: ...


@dataclass(frozen=True)
class ArchiveLimits:
    max_uncompressed_bytes: int = 200 * 1024 * 1024
    max_compression_ratio: int = 100
    max_members: int = 1000
    max_depth: int = 5
    ratio_floor_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, scanning: _ScanningLimits) -> ArchiveLimits:
        return cls(max_uncompressed_bytes=scanning.max_uncompressed_bytes,
                   max_compression_ratio=scanning.max_compression_ratio,
                   max_members=scanning.max_archive_members,
                   max_depth=scanning.max_archive_depth)


class ArchiveRejected(Exception):
    """An archive broke a limit or cannot be read reliably; ``reason`` says which and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Budget:
    """The byte and member budget of one walk over an archive tree, at every level together."""

    def __init__(self, limits: ArchiveLimits, input_size: int) -> None:
        self._limits = limits
        self._input_size = max(input_size, 1)
        self._produced = 0
        self._members = 0
        self._paused = False

    def charge(self, count: int, where: str) -> None:
        """Count ``count`` bytes that decompression produced."""
        if self._paused:
            return
        self._produced += count
        limits = self._limits
        if self._produced > limits.max_uncompressed_bytes:
            raise ArchiveRejected(
                f"{where}: more than {limits.max_uncompressed_bytes} bytes uncompressed")
        if self._produced > limits.ratio_floor_bytes \
                and self._produced > limits.max_compression_ratio * self._input_size:
            raise ArchiveRejected(
                f"{where}: compression ratio over {limits.max_compression_ratio}:1")

    def count(self, where: str) -> None:
        """Count one member, at whatever depth."""
        self._members += 1
        if self._members > self._limits.max_members:
            raise ArchiveRejected(
                f"{where}: more than {self._limits.max_members} archive members in all")

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Read a member a second time without counting it again: its bytes were counted,
        and passed every limit, the first time."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
