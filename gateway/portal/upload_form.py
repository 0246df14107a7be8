"""The upload form's body read into memory, bounded, and parsed without a temporary file.

Starlette's multipart parser spools each file to a ``SpooledTemporaryFile`` that rolls over
to disk above 1 MB: plaintext on disk. Here the body is read first, counted as it arrives
and refused past ``limit`` (so memory is bounded too), and the parser's spool is given that
limit as its size, so no part can roll over (as admin_ui.pages.tickets.uploads does behind
the staff login).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request


class BodyTooLarge(Exception):
    pass


class BadForm(Exception):
    pass


class TooManyParts(Exception):
    pass


class BodyStalled(Exception):
    """No byte of the body arrived for the idle timeout."""


async def read_body(request: Request, limit: int, *, idle_seconds: float) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        # A deadline moved on by every chunk: a slow line is fine, a silent one is not (it
        # would hold its memory and its upload slot for ever).
        async with asyncio.timeout(idle_seconds) as idle:
            async for chunk in request.stream():
                idle.reschedule(loop.time() + idle_seconds)
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyStalled from None
    return b"".join(chunks)


async def parse_in_memory(request: Request, body: bytes, *, max_parts: int) -> FormData:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadForm("the form must be sent as multipart/form-data")

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        async with aclosing(stream()) as chunks:
            parser = MultiPartParser(request.headers, chunks, max_files=max_parts,
                                     max_fields=50, max_part_size=len(body) + 1)
            # An instance attribute: the class's 1 MB stays for everyone else.
            parser.spool_max_size = len(body) + 1
            return await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooManyParts from None
        raise BadForm(exc.message) from None
