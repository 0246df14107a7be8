"""Reading the DATA phase in chunks instead of line by line.

aiosmtpd reads DATA one line at a time in Python; for a 100 KB message that is about 1,300
trips through its loop, and it was a quarter of the SMTP process's CPU. Here the terminator
is found by its dot (gateway.smtp.transparency), and the line length check and
dot-unstuffing run over 1 MiB windows at C speed in the one buffer the data arrived in, and
that buffer is handed out as the message: no copy of it is made here. The semantics stay
aiosmtpd's (RFC 5321 4.5.2):

- only CRLF "." CRLF ends the data; a bare LF or CR never does (no SMTP smuggling);
- a line starting with "." loses that dot;
- a line longer than the limit (CRLF and transparency dot included) gets 500, more data
  than the size limit gets 552, both only after the terminator, so the session stays in
  step with the client;
- a message with bare LF (or CR) line ends is one long "line" between CRLFs: that is named
  (gateway.smtp.content's refusal) instead of the line limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from gateway.smtp.content import bare_line_end
from gateway.smtp.transparency import TERMINATOR, find_terminator, has_dot_line

CHUNK = 64 * 1024
# Room kept allocated behind the message handed out, so the edge's Received field (a few
# hundred bytes: gateway.smtp.trace) goes in front of it within the same allocation. Had
# the buffer to grow for it, CPython would copy a bytearray whose start was cut away into
# a new one: two whole copies of a large message for a moment.
HEAD_ROOM = 1024


@dataclass(frozen=True)
class DataResult:
    # The receive buffer itself, trimmed to the message: the caller owns it from here.
    content: bytearray | None = None
    too_long: bool = False
    too_much: bool = False
    # The refusal for bare LF or CR line ends, when those made a line too long.
    bare_line_end: str | None = None
    # The client went away before the terminator.
    closed: bool = False


async def read_data(reader: asyncio.StreamReader, *, max_bytes: int | None,
                    max_line: int, on_progress: Callable[[], None] | None = None
                    ) -> DataResult:
    # The reader's limit is the command line length (aiosmtpd sizes it so), and a
    # StreamReader pauses the socket whenever it holds twice its limit: about 2 KB. Left
    # so, every chunk of DATA would cost a pause and a resume. Raised for this phase only;
    # commands are read with the small limit again afterwards.
    limit: int = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(limit, 4 * CHUNK)  # type: ignore[attr-defined]
    try:
        return await _read(reader, max_bytes, max_line, on_progress)
    finally:
        reader._limit = limit  # type: ignore[attr-defined]


async def _read(reader: asyncio.StreamReader, max_bytes: int | None, max_line: int,
                on_progress: Callable[[], None] | None) -> DataResult:
    # The CRLF that ended the DATA command counts as the start of the first line, so an
    # empty message (the client sends ".\r\n" at once) is found like any other terminator.
    buffer = bytearray(b"\r\n")
    search_from = 0
    dropped = 0  # bytes thrown away once the message is known to be too large
    while True:
        end = find_terminator(buffer, search_from)
        if end >= 0:
            break
        # Keep what could be the start of a terminator split across two reads.
        search_from = max(0, len(buffer) - len(TERMINATOR) + 1)
        if max_bytes is not None and dropped + len(buffer) - 2 > max_bytes and search_from > 2:
            # Too large already: keep reading to the end, but only the tail in memory.
            dropped += search_from
            del buffer[:search_from]
            search_from = 0
        chunk = await reader.read(CHUNK)
        if not chunk:
            return DataResult(closed=True)
        if on_progress is not None:
            on_progress()
        buffer += chunk
    _give_back(reader, bytes(buffer[end + len(TERMINATOR):]))
    if dropped:
        return DataResult(too_much=True)
    # The message is buffer[2 : end + 2] (its last CRLF included). It is checked and
    # unstuffed where it lies: each whole-message copy here is one more copy of a 50 MB
    # message in the SMTP process's peak.
    if max_bytes is not None and end > max_bytes:
        return DataResult(too_much=True)
    del buffer[end + 2:]
    if _has_long_line(buffer, max_line):
        # The leading CRLF adds one to each of the counts compared: same answer.
        bare = bare_line_end(buffer)
        if bare is not None:
            return DataResult(bare_line_end=bare)
        return DataResult(too_long=True)
    _unstuff(buffer)
    _reserve(buffer, HEAD_ROOM + 2)
    # CPython cuts bytes from the front of a bytearray by moving its start: no copy.
    del buffer[:2]
    return DataResult(content=buffer)


def _reserve(buffer: bytearray, room: int) -> None:
    """Let ``room`` more bytes fit in ``buffer``'s allocation without a new one.

    Growing and shrinking back leaves the allocation as it is: CPython gives a bytearray's
    allocation back only when it falls below half of it (so a message smaller than the
    room may lose it: a copy of a few hundred bytes then). Growing a buffer whose start was
    never cut reallocates it (mremap for a large one), never beside a copy.
    """
    size = len(buffer)
    buffer.extend(bytes(room))
    del buffer[size:]


def _has_long_line(raw: bytes | bytearray, max_line: int, window: int = 1 << 20) -> bool:
    """Whether a line's text is longer than ``max_line`` - 2 (the limit counts the CRLF).

    Split into lines at C speed, a window of about 1 MiB at a time (ending at a line
    boundary), so a 50 MB message never becomes a million line objects at once.
    """
    longest = max_line - 2
    if not _may_have_long_line(raw, longest):
        return False
    start, size = 0, len(raw)
    while start < size:
        end = raw.find(b"\r\n", min(size, start + window))
        if end < 0:
            end = size
        if max(map(len, raw[start:end].split(b"\r\n"))) > longest:
            return True
        start = end + 2
    return False


def _may_have_long_line(raw: bytes | bytearray, longest: int) -> bool:
    """False only where no line is longer than ``longest``, found with a few hundred short
    ``find`` calls per 200 KB instead of splitting every line (a fifth of the time).

    Probes every ``step`` bytes whether the ``span`` bytes before hold a CRLF. A longer
    line [a, b) holds no CRLF and at least ``longest`` + 1 = ``span`` + ``step`` bytes, so
    among the ``step`` + 1 positions from a + ``span`` to b there is a probe (or b is the
    end of the data, probed too) whose span lies inside the line: that probe finds none.
    """
    step = (longest + 1) // 2
    span = longest + 1 - step
    if step < 16:
        return True  # a tiny limit: the exact check is as quick
    size = len(raw)
    for probe in range(span, size, step):
        if raw.find(b"\r\n", probe - span, probe) < 0:
            return True
    return size >= span and raw.find(b"\r\n", size - span, size) < 0


def _unstuff(buffer: bytearray, window: int = 1 << 20) -> None:
    """Transparency (RFC 5321 4.5.2): drop the first dot of every line that starts with
    one, in place. ``buffer`` starts with the CRLF before the first line.

    One ``replace`` per window of about 1 MiB that starts at a CRLF, so no "CRLF ." is split
    between two windows; the result never grows, so it is written back over what was read.
    """
    if not has_dot_line(buffer):
        return  # the usual case (base64 has no dots): nothing to move
    read = write = 0
    size = len(buffer)
    while read < size:
        stop = buffer.find(b"\r\n", min(size, read + window))
        if stop < 0:
            stop = size
        piece = buffer[read:stop].replace(b"\r\n.", b"\r\n")
        buffer[write : write + len(piece)] = piece
        write += len(piece)
        read = stop
    del buffer[write:]


def _give_back(reader: asyncio.StreamReader, data: bytes) -> None:
    """Put bytes read past the terminator (pipelined commands) back in front of the
    reader's buffer; StreamReader has no public way to do that."""
    if data:
        buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
        buffer[:0] = data
