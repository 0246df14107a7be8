"""Zip: the central directory read by hand (counted before anything is inflated), local
headers checked against it, members inflated in bounded steps."""

from __future__ import annotations

import bz2
import functools
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from scanning.archives.decompress import copy_chunks, decompress_stream, inflate, lzma1_raw
from scanning.archives.limits import ArchiveRejected, Budget, MemberSource
from scanning.archives.names import unsafe_name

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_EOCD64_LOCATOR = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_UTF8 = 0x0800
_FLAG_MASKED_DIRECTORY = 0x2000
_METHOD_AES = 99


class UnreadableZip(ArchiveRejected):
    """No zip directory where one was looked for: for data found only by its tail, no zip."""


@dataclass(frozen=True)
class ZipEntry:
    name: str
    raw_name: bytes
    flags: int
    method: int
    compressed_size: int
    declared_size: int
    header_offset: int  # where the local header is in the data, prefix included

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION)) \
            or self.method == _METHOD_AES


def find_eocd(data: bytes) -> int | None:
    """The end-of-central-directory record's offset.

    A record whose comment ends exactly at the end of the data wins over one that merely
    appears last: a fake record hidden in the real one's comment must not be the one read.
    """
    floor = max(0, len(data) - _EOCD_SIZE - 0xFFFF)
    candidates: list[int] = []
    pos = data.rfind(_EOCD, floor)
    while pos >= 0 and len(candidates) < 64:
        if pos + _EOCD_SIZE <= len(data):
            comment = int.from_bytes(data[pos + 20:pos + 22], "little")
            if pos + _EOCD_SIZE + comment == len(data):
                return pos
            candidates.append(pos)
        pos = data.rfind(_EOCD, floor, pos)
    return candidates[0] if candidates else None


def read_zip_directory(data: bytes, max_entries: int, where: str = "zip") -> list[ZipEntry]:
    """The central directory of the zip ``data``: at most ``max_entries`` entries.

    Counts entries without building more than the limit allows and refuses zip64 records and
    multi-volume archives. Raises ``ArchiveRejected``.
    """
    eocd = find_eocd(data)
    if eocd is None:
        raise UnreadableZip(f"{where}: unreadable zip archive (no central directory)")
    (_, disk, cd_disk, _, total, cd_size, cd_offset, _) = struct.unpack_from(
        "<4s4H2LH", data, eocd)
    if (eocd >= 20 and data[eocd - 20:eocd - 16] == _EOCD64_LOCATOR) \
            or 0xFFFF in (total, disk, cd_disk) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise ArchiveRejected(f"{where}: zip64 records")
    if disk or cd_disk:
        raise ArchiveRejected(f"{where}: multi-volume zip archive")
    if total > max_entries:
        raise ArchiveRejected(f"{where}: more than {max_entries} archive members ({total})")
    start = eocd - cd_size
    prefix = start - cd_offset  # bytes before the zip proper, e.g. a self-extractor stub
    if start < 0 or prefix < 0:
        raise UnreadableZip(f"{where}: unreadable zip archive (central directory out of range)")
    entries: list[ZipEntry] = []
    pos = start
    while pos < eocd:
        if len(entries) >= max_entries:
            raise ArchiveRejected(f"{where}: more than {max_entries} archive members")
        if data[pos:pos + 4] != _CENTRAL or pos + 46 > eocd:
            raise UnreadableZip(f"{where}: unreadable zip archive (bad central directory)")
        (flags, method, csize, usize, nlen, elen, clen, offset) = struct.unpack_from(
            "<8xHH8xLLHHH8xL", data, pos)
        raw = data[pos + 46:pos + 46 + nlen]
        extra = data[pos + 46 + nlen:pos + 46 + nlen + elen]
        pos += 46 + nlen + elen + clen
        if pos > eocd:
            raise UnreadableZip(f"{where}: unreadable zip archive (bad central directory)")
        if 0xFFFFFFFF in (csize, usize, offset) or _has_extra(extra, 0x0001):
            raise ArchiveRejected(f"{where}: zip64 records")
        name = raw.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", "replace")
        entries.append(ZipEntry(name, raw, flags, method, csize, usize, offset + prefix))
    if len(entries) != total:
        # Tools that trust the count and tools that walk the directory would see different
        # archives; ClamAV is one of them.
        raise ArchiveRejected(f"{where}: zip directory holds {len(entries)} entries, "
                              f"its end record says {total}")
    return entries


def _has_extra(extra: bytes, wanted: int) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        header_id, size = struct.unpack_from("<HH", extra, pos)
        if header_id == wanted:
            return True
        pos += 4 + size
    return False


def zip_members(data: bytes, where: str, max_members: int,
                budget: Budget) -> Iterator[tuple[str, MemberSource]]:
    """Every member of the zip ``data``: its path and its content as it is inflated (each
    call of the source inflates it from the start).

    The whole directory and every local header are checked before the first member.
    """
    entries = read_zip_directory(data, max_members, where)
    # Everything that needs no decompression is decided first: a password-protected or
    # path-traversing archive is refused before a single member is inflated.
    for entry in entries:
        problem = unsafe_name(entry.name)
        if problem is not None:
            raise ArchiveRejected(f"{where}: member name {entry.name!r} has {problem}")
        if entry.encrypted:
            raise ArchiveRejected(f"{where}: encrypted archive member {entry.name!r}")
    spans = [(_data_start(data, entry, where), entry) for entry in entries]
    by_offset = sorted(spans, key=lambda span: span[1].header_offset)
    for (start, entry), (_, following) in itertools.pairwise(by_offset):
        if start + entry.compressed_size > following.header_offset:
            # Overlapping members are how non-recursive zip bombs reuse one stream.
            raise ArchiveRejected(f"{where}: overlapping archive members "
                                  f"{entry.name!r} and {following.name!r}")
    view = memoryview(data)
    for start, entry in spans:
        src = view[start:start + entry.compressed_size]
        member = f"{where}/{entry.name}"
        yield member, functools.partial(_member_chunks, entry, src, member, budget)


def _data_start(data: bytes, entry: ZipEntry, where: str) -> int:
    at = entry.header_offset
    if data[at:at + 4] != _LOCAL or at + 30 > len(data):
        raise ArchiveRejected(f"{where}: unreadable zip archive (bad local header)")
    flags, method, csize, usize, nlen, elen = struct.unpack_from("<6xHH8xLLHH", data, at)
    raw = data[at + 30:at + 30 + nlen]
    if 0xFFFFFFFF in (csize, usize) \
            or _has_extra(data[at + 30 + nlen:at + 30 + nlen + elen], 0x0001):
        # zipfile's force_zip64 and streaming writers put zip64 in the local header only.
        raise ArchiveRejected(f"{where}: zip64 records")
    if raw != entry.raw_name or method != entry.method:
        # unzip reads the central directory, stream readers the local headers.
        raise ArchiveRejected(f"{where}: local and central zip headers disagree "
                              f"about {entry.name!r}")
    if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION | _FLAG_MASKED_DIRECTORY):
        raise ArchiveRejected(f"{where}: encrypted archive member {entry.name!r}")
    start: int = at + 30 + nlen + elen
    if start + entry.compressed_size > len(data):
        raise ArchiveRejected(f"{where}: truncated zip member {entry.name!r}")
    return start


def _member_chunks(entry: ZipEntry, src: memoryview, where: str,
                   budget: Budget) -> Iterator[bytes]:
    if entry.method == 0:
        yield from copy_chunks(src)
    elif entry.method == 8:
        yield from inflate(src, -15, where, budget)
    elif entry.method == 12:
        yield from decompress_stream(bz2.BZ2Decompressor(), src, where, budget)
    elif entry.method == 14:
        if len(src) < 4:
            raise ArchiveRejected(f"{where}: truncated compressed data")
        props_size = int.from_bytes(src[2:4], "little")
        decoder = lzma1_raw(bytes(src[4:4 + props_size]), where)
        # Without the end-marker flag (bit 1) the stream just stops at its size.
        yield from decompress_stream(decoder, src[4 + props_size:], where, budget,
                                     require_end=bool(entry.flags & 0x0002))
    else:
        # Deflate64, PKWARE implode and the like: nothing here can measure them, and
        # what cannot be measured is not let through.
        raise ArchiveRejected(f"{where}: unsupported compression method {entry.method}")
