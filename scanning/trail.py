"""What a survey follows through a stream it does not keep: the stream's last bytes, and
whether a marker occurs anywhere in it, also where two chunks meet (scanning.deferred for
large attachments, scanning.archives.walker for large archive members)."""

from __future__ import annotations


class Trail:
    def __init__(self, marker: bytes, tail_bytes: int) -> None:
        self.marker = marker
        self.tail_bytes = tail_bytes
        self.tail = b""
        self.found = False
        self._overlap = b""  # the end of the chunk before: the marker may span two chunks

    def feed(self, chunk: bytes | bytearray) -> None:
        chunk = bytes(chunk)
        size = len(self.marker)
        self.found = self.found or self.marker in self._overlap + chunk[:size] \
            or self.marker in chunk
        self._overlap = chunk[-(size - 1):]
        self.tail = (self.tail + chunk)[-self.tail_bytes:] if len(chunk) < self.tail_bytes \
            else chunk[-self.tail_bytes:]
