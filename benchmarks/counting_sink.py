"""The far end of a relay under test: an aiosmtpd server that only counts what it receives.

Run as ``python -m benchmarks.counting_sink PORT LOGFILE``; prints "ready" once listening.
For every accepted transaction it appends one line to LOGFILE: the time of the 250
(``time.time()``), the DATA size in bytes and the Message-ID, then flushes, so that the
benchmark can count deliveries and take the last one's time without talking to it. The
message itself is dropped; it runs in a process of its own so that it does not compete with
the benchmark's SMTP clients for the GIL.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class CountingHandler:
    def __init__(self, log: IO[str]) -> None:
        self.log = log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        head = data[:data.find(b"\r\n\r\n") + 2]
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace") if found else "-"
        self.log.write(f"{time.time():.6f} {len(data)} {message_id}\n")
        self.log.flush()
        return "250 2.0.0 Ok"


async def main(port: int, logfile: Path) -> None:
    with logfile.open("a", encoding="ascii") as log:
        handler = CountingHandler(log)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=200 * 1024 * 1024, hostname="sink"),
            "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
