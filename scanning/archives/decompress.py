"""Decompression in bounded steps: every output chunk is at most ``OUT_STEP`` bytes and is
charged to the walk's budget before it is handed on, so a bomb stops at the first limit."""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Generator, Iterator
from typing import Protocol

from scanning.archives.limits import ArchiveRejected, Budget

IN_STEP = 64 * 1024  # compressed bytes fed per step
OUT_STEP = 64 * 1024  # most bytes a decompressor may produce per step
# LZMA raw streams (zip method 14, 7z headers) name their dictionary size themselves: a hostile
# one would make liblzma allocate gigabytes before producing a byte. xz -9 uses 64 MiB.
LZMA_MAX_DICT = 64 * 1024 * 1024
XZ_MEMLIMIT = 2 * LZMA_MAX_DICT


class Decompressor(Protocol):
    """bz2.BZ2Decompressor and lzma.LZMADecompressor alike."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes: ...


def lzma1_raw(props: bytes, where: str) -> lzma.LZMADecompressor:
    """A raw LZMA (not LZMA2) decoder from the 5 property bytes zip and 7z store."""
    if len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise ArchiveRejected(f"{where}: corrupt LZMA properties")
    lc, rest = props[0] % 9, props[0] // 9
    lp, pb = rest % 5, rest // 5
    dict_size = int.from_bytes(props[1:5], "little")
    if dict_size > LZMA_MAX_DICT:
        raise ArchiveRejected(f"{where}: LZMA dictionary of {dict_size} bytes")
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
            "id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}])
    except lzma.LZMAError:
        raise ArchiveRejected(f"{where}: corrupt LZMA properties") from None


def lzma2_raw(props: bytes, where: str) -> lzma.LZMADecompressor:
    if len(props) != 1 or props[0] > 40:
        raise ArchiveRejected(f"{where}: corrupt LZMA2 properties")
    dict_size = (2 | (props[0] & 1)) << (props[0] // 2 + 11)
    if dict_size > LZMA_MAX_DICT:
        raise ArchiveRejected(f"{where}: LZMA dictionary of {dict_size} bytes")
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
        "id": lzma.FILTER_LZMA2, "dict_size": dict_size}])


def copy_chunks(src: memoryview) -> Iterator[bytes]:
    for pos in range(0, len(src), OUT_STEP):
        yield bytes(src[pos:pos + OUT_STEP])


def inflate(src: memoryview, wbits: int, where: str,
            budget: Budget) -> Generator[bytes, None, int]:
    """Inflate one deflate/zlib/gzip stream; returns how many input bytes it used."""
    inflater = zlib.decompressobj(wbits)
    pos = 0
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                data: bytes | memoryview = inflater.unconsumed_tail
            else:
                data = src[pos:pos + IN_STEP]
                pos += len(data)
            out = inflater.decompress(data, OUT_STEP)
            if out:
                budget.charge(len(out), where)
                yield out
            elif not data:
                break
    except zlib.error:
        raise ArchiveRejected(f"{where}: corrupt compressed data") from None
    if not inflater.eof:
        raise ArchiveRejected(f"{where}: truncated compressed data")
    return pos - len(inflater.unused_data)


def decompress_stream(decompressor: Decompressor, src: memoryview, where: str,
                      budget: Budget, *, require_end: bool = True
                      ) -> Generator[bytes, None, int]:
    """Decompress with a bz2/lzma decompressor; returns how many input bytes it used."""
    pos = 0
    try:
        while not decompressor.eof:
            if decompressor.needs_input:
                if pos >= len(src):
                    break
                data: bytes | memoryview = src[pos:pos + IN_STEP]
                pos += len(data)
            else:
                data = b""
            out = decompressor.decompress(data, OUT_STEP)
            if out:
                budget.charge(len(out), where)
                yield out
            elif not data:
                break
    except (OSError, EOFError, ValueError, lzma.LZMAError):
        raise ArchiveRejected(f"{where}: corrupt compressed data") from None
    if require_end and not decompressor.eof:
        raise ArchiveRejected(f"{where}: truncated compressed data")
    return pos - len(decompressor.unused_data)
