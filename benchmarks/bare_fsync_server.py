"""The baseline: a bare aiosmtpd server that only writes and fsyncs each message.

Run as ``python -m benchmarks.bare_fsync_server PORT DIR``; prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

_counter = itertools.count()


class FsyncHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        path = self.directory / f"{next(_counter)}.eml"
        data: bytes = envelope.original_content
        # The same durability promise the gateway makes: on disk before 250. Done off the
        # event loop, as the gateway does with its commit.
        await asyncio.get_running_loop().run_in_executor(None, _write_fsync, path, data)
        return "250 2.0.0 Ok"


def _write_fsync(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


async def main(port: int, directory: Path) -> None:
    handler = FsyncHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=50 * 1024 * 1024, hostname="bare"),
        "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
