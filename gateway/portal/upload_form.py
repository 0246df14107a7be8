"""The upload form's body read into memory, bounded, and parsed without a temporary file and
without copying the files.

Starlette's multipart parser spools each file to a ``SpooledTemporaryFile`` that rolls over
to disk above 1 MB: plaintext on disk. Here the body is read first, counted as it arrives
and refused past ``limit`` (so memory is bounded too), into one buffer (of the declared
length when the client gives one). The parser (Starlette's, on python-multipart) is then fed
that buffer whole, and each file is kept as a view into it rather than written anywhere: an
upload is in memory once, and its files are not copied again (hashing, scanning and
building the message read the views).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from starlette.datastructures import FormData, Headers
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


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str
    content_type: str
    # A view into the request body (or, rarely, a copy when the parser split the part).
    data: memoryview | bytes


@dataclass(frozen=True)
class ParsedForm:
    fields: dict[str, str]  # the first value of each text field
    files: list[FilePart]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


async def read_body(request: Request, limit: int, *, idle_seconds: float) -> bytearray:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray(int(declared) if declared.isdigit() else 0)
    size = 0
    loop = asyncio.get_running_loop()
    try:
        # A deadline moved on by every chunk: a slow line is fine, a silent one is not (it
        # would hold its memory and its upload slot for ever).
        async with asyncio.timeout(idle_seconds) as idle:
            async for chunk in request.stream():
                idle.reschedule(loop.time() + idle_seconds)
                if size + len(chunk) > limit:
                    raise BodyTooLarge
                # Into the buffer of the declared size, or appended (chunked, no length).
                body[size:size + len(chunk)] = chunk
                size += len(chunk)
    except TimeoutError:
        raise BodyStalled from None
    if declared.isdigit() and size != int(declared):
        raise BadForm("the body is not as long as its Content-Length")
    return body


class _InPlaceParser(MultiPartParser):
    """Starlette's parser, fed the whole body at once, keeping file parts as views into it."""

    def __init__(self, headers: Headers, body: bytearray, *, max_parts: int) -> None:
        async def whole() -> AsyncGenerator[bytes, None]:
            yield body  # type: ignore[misc]  # python-multipart reads any bytes-like

        super().__init__(headers, whole(), max_files=max_parts, max_fields=50,
                         max_part_size=len(body) + 1)
        self.body = body
        self.pieces: dict[int, list[memoryview | bytes]] = {}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        file = self._current_part.file
        if file is None:
            super().on_part_data(data, start, end)
            return
        # Never into the part's spool: nothing reaches the UploadFile, the data stays here.
        piece = (memoryview(self.body)[start:end] if data is self.body
                 else bytes(data[start:end]))
        self.pieces.setdefault(id(file), []).append(piece)


def _multipart(request: Request) -> None:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadForm("the form must be sent as multipart/form-data")


async def parse_in_memory(request: Request, body: bytes | bytearray, *,
                          max_parts: int) -> FormData:
    """As Starlette's FormData, each file in a spool of its own that never rolls over to
    disk (a copy of the file: for small forms, e.g. the pickup answer's)."""
    _multipart(request)

    async def stream() -> AsyncGenerator[bytes, None]:
        yield bytes(body) if isinstance(body, bytearray) else body

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


async def parse_in_place(request: Request, body: bytearray, *, max_parts: int) -> ParsedForm:
    """The form with its files as views into ``body``: nothing copied (the upload's)."""
    _multipart(request)
    parser = _InPlaceParser(request.headers, body, max_parts=max_parts)
    try:
        async with aclosing(parser.stream):
            form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooManyParts from None
        raise BadForm(exc.message) from None
    fields: dict[str, str] = {}
    files = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, value)
            continue
        pieces = parser.pieces.get(id(value), [])
        data: memoryview | bytes = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        files.append(FilePart(name, value.filename or "",
                              value.content_type or "application/octet-stream", data))
        await value.close()
    return ParsedForm(fields, files)
