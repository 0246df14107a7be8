"""gzip, bzip2 and xz: one compressed stream (or several concatenated, as the tools take them)
around one file, which is named after the outer one."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator

from scanning.archives.decompress import XZ_MEMLIMIT, decompress_stream, inflate
from scanning.archives.limits import Budget, MemberSource
from scanning.archives.sniff import sniff

COMPRESSED_KINDS = ("gzip", "bzip2", "xz")


def single_stream(kind: str, data: bytes, where: str,
                  budget: Budget) -> Iterator[tuple[str, MemberSource]]:
    """The one file inside the gzip, bzip2 or xz ``data``: its name and its content."""
    inner = f"{where}/{_inner_name(where, kind)}"

    def chunks() -> Iterator[bytes]:
        # Concatenated streams are one file to gunzip, bunzip2 and xz alike.
        rest = memoryview(data)
        while True:
            if kind == "gzip":
                used = yield from inflate(rest, 16 + zlib.MAX_WBITS, inner, budget)
            elif kind == "bzip2":
                used = yield from decompress_stream(bz2.BZ2Decompressor(), rest, inner,
                                                  budget)
            else:
                used = yield from decompress_stream(
                    lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT),
                    rest, inner, budget)
            rest = rest[used:]
            if used <= 0 or sniff(bytes(rest[:16]), top=False) != kind:
                return

    yield inner, chunks


_SUFFIXES = {"gzip": (".gz", ".gzip", ".z"), "bzip2": (".bz2", ".bz"), "xz": (".xz",)}


def _inner_name(where: str, kind: str) -> str:
    base = where.rsplit("/", 1)[-1]
    lower = base.lower()
    for short, long in ((".tgz", ".tar"), (".tbz2", ".tar"), (".tbz", ".tar"),
                        (".txz", ".tar")):
        if lower.endswith(short):
            return base[:-len(short)] + long
    for suffix in _SUFFIXES[kind]:
        if lower.endswith(suffix) and len(base) > len(suffix):
            return base[:-len(suffix)]
    return base + ".uncompressed"
