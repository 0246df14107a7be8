"""The far end of a relay under test: an SMTP server that only counts what it receives.

Run as ``python -m benchmarks.counting_sink PORT LOGFILE``; prints "ready" once listening.
For every accepted transaction it appends one line to LOGFILE: the time of the 250
(``time.time()``), the DATA size in bytes and the Message-ID, then flushes, so that the
benchmark can count deliveries and take the last one's time without talking to it. The
message itself is dropped; it runs in a process of its own so that it does not compete with
the benchmark's SMTP clients for the GIL.

It speaks just enough ESMTP for a relay to deliver (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT; 8BITMIME, SMTPUTF8 and SIZE offered, no PIPELINING) and reads DATA as a real next hop
(Postfix, Exchange) does: in large reads, looking for the terminator, not line by line.
Until 2026-12-05 it was an aiosmtpd server, whose DATA loop runs in Python once per line:
a 13.7 MB base64 message took it about 0.45 s of CPU, on the same two cores as the relay
under test, and one such sink serialises every relay's deliveries behind it, so the "like
for like" relay comparison measured the sink as much as the relays.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import IO

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_TERMINATOR = b"\r\n.\r\n"
_LIMIT = 256 * 1024 * 1024
_EHLO = (b"250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
         b"250 SIZE " + str(200 * 1024 * 1024).encode() + b"\r\n")


def message_id_of(data: bytes) -> str:
    head = data[:data.find(b"\r\n\r\n") + 2]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else "-"


async def read_data(reader: asyncio.StreamReader) -> bytes:
    """The message after DATA's 354, dot-unstuffed, its last CRLF kept (as aiosmtpd gave
    it). No PIPELINING is offered, so nothing follows the terminator before our reply."""
    # The CRLF that ended the DATA command starts the first line: an empty message's
    # ".\r\n" is found like any other terminator.
    buffer = bytearray(b"\r\n")
    searched = 0
    while (end := buffer.find(_TERMINATOR, searched)) < 0:
        searched = max(0, len(buffer) - len(_TERMINATOR) + 1)
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        buffer += chunk
    return bytes(buffer[:end + 2]).replace(b"\r\n..", b"\r\n.")[2:]


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  log: IO[str]) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(_EHLO)
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                data = await read_data(reader)
                log.write(f"{time.time():.6f} {len(data)} {message_id_of(data)}\n")
                log.flush()
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 Ok\r\n")
            else:
                writer.write(b"502 5.5.2 Command not implemented\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return
    finally:
        writer.close()


async def main(port: int, logfile: Path) -> None:
    with logfile.open("a", encoding="ascii") as log:
        server = await asyncio.start_server(
            lambda r, w: session(r, w, log), "127.0.0.1", port, limit=_LIMIT)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
