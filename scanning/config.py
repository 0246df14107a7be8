"""The scanner's own settings: plain values, built by whoever runs it.

``scanning`` imports nothing of the gateway's; the gateway builds a ``ScannerConfig`` from its
``[scanning]`` settings (``gateway.services.scanner_config``), a benchmark or a test builds one
directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scanning.archives import ArchiveLimits
from scanning.parts import MimeLimits

# The attachment types the scanner can block by content (scanning.content_types).
BLOCKABLE_TYPES: tuple[str, ...] = ("executable", "script", "office-macro")


@dataclass(frozen=True)
class ScannerConfig:
    # Attachment types quarantined whatever ClamAV says, recognised by content.
    blocked_types: frozenset[str] = frozenset(BLOCKABLE_TYPES)
    # The parts of one message go to clamd side by side, this many at a time.
    max_concurrent_scans: int = 4
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    mime: MimeLimits = field(default_factory=MimeLimits)

    def __post_init__(self) -> None:
        unknown = set(self.blocked_types) - set(BLOCKABLE_TYPES)
        if unknown:
            raise ValueError(f"unknown blocked types: {', '.join(sorted(unknown))}")
        if self.max_concurrent_scans < 1:
            raise ValueError("max_concurrent_scans must be at least 1")
