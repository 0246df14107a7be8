"""How many uploads the portal reads at once. Each holds up to ``max_upload_bytes`` in memory
(bodies are never spooled to disk), so the count bounds the process's memory: one more than
allowed is turned away (503 with Retry-After) before a byte of its body is read.

A counter on the event loop, not a lock: taking a slot never waits, and nothing between the
check and the increment yields to another request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class NoSlot(Exception):
    pass


class UploadSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Held for the whole upload (read, parse, scan, queue); NoSlot when all are busy."""
        if self.busy >= self.limit:
            raise NoSlot
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
