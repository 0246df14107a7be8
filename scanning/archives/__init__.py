"""The gateway's own archive limits, checked on the bytes before ClamAV sees them.

ClamAV answers OK for archives it truncates or cannot open, so whatever breaks one of these
limits is UNSCANNABLE for the caller. Nothing here trusts a declared size: zip, tar, gzip,
bzip2 and xz are really decompressed, in chunks of at most 64 KiB, counting the bytes that come
out and stopping at the first limit broken. Memory stays bounded by the input plus the members
that must be held to be opened themselves (nested archives), and those are bounded by the byte
budget below.

Rules:

- *Uncompressed bytes* are the bytes that decompression (deflate, bzip2, LZMA) produces, at every
  nesting level together: a zip inside a zip is counted once as it comes out of the outer one,
  and its members again as they come out of it. Stored data (zip method 0, tar members) is a copy
  of input bytes, not an expansion, and is not counted: it cannot exceed the input.
- *Compression ratio* is those bytes divided by the size of the outermost input, for the whole
  walk, not per member: a bomb spread over many members or nesting levels is caught as early as
  one in a single member. It is only applied once more than ``ratio_floor_bytes`` came out,
  because a small, very regular file (a blank form) compresses far beyond any bomb ratio and
  is harmless.
- *Members* are counted per archive (a zip's central directory is counted before anything is
  decompressed, stopping at the limit) and over the whole walk, so that 16 members nested five
  deep do not become a million members.
- *Depth* starts at 1 for the outermost archive; every container counts, including a gzip,
  bzip2 or xz wrapper (a ``.tar.gz`` is two levels), as ClamAV counts them.
- zip64 records, encrypted members (ZipCrypto and AES alike), multi-volume zips, members whose
  name has a ``..`` component or is absolute (``/``, ``\\``, a drive letter), overlapping zip
  members, local headers that disagree with the central directory, sparse tar members and data
  hidden after a tar's end are refused: each either hides content from ClamAV or is a known
  way to make tools disagree about what an archive holds.
- 7z, RAR and CAB are recognised by magic and unpacked by ClamAV, not here. What is read here
  is only their directory: 7z's header (decoded if LZMA-compressed) for encrypted headers or
  members, the number of files, their names and the declared sizes; RAR's first headers for
  header encryption (RAR 4 and 5); CAB's header for the number of files, the declared sizes and
  the names. A 7z whose header is out of range or fails its CRC is refused (ClamAV would answer
  OK); one whose header uses a coder not read here is left to ClamAV.
"""

from __future__ import annotations

import bz2
import io
import itertools
import lzma
import re
import struct
import tarfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

_IN = 64 * 1024  # compressed bytes fed per step
_OUT = 64 * 1024  # most bytes a decompressor may produce per step
_SNIFF = 512  # enough for every magic below, tar's at offset 257 included
# LZMA raw streams (zip method 14, 7z headers) name their dictionary size themselves: a hostile
# one would make liblzma allocate gigabytes before producing a byte. xz -9 uses 64 MiB.
_LZMA_MAX_DICT = 64 * 1024 * 1024
_XZ_MEMLIMIT = 2 * _LZMA_MAX_DICT
_7Z_MAX_HEADER = 16 * 1024 * 1024


class _ScanningLimits(Protocol):
    """The fields of ``gateway.settings.ScanningSettings`` used here (scanning imports nothing
    from gateway)."""

    @property
    def max_uncompressed_bytes(self) -> int: ...
    @property
    def max_compression_ratio(self) -> int: ...
    @property
    def max_archive_members(self) -> int: ...
    @property
    def max_archive_depth(self) -> int: ...


@dataclass(frozen=True)
class ArchiveLimits:
    max_uncompressed_bytes: int = 200 * 1024 * 1024
    max_compression_ratio: int = 100
    max_members: int = 1000
    max_depth: int = 5
    ratio_floor_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, scanning: _ScanningLimits) -> ArchiveLimits:
        return cls(max_uncompressed_bytes=scanning.max_uncompressed_bytes,
                   max_compression_ratio=scanning.max_compression_ratio,
                   max_members=scanning.max_archive_members,
                   max_depth=scanning.max_archive_depth)


class ArchiveRejected(Exception):
    """An archive broke a limit or cannot be read reliably; ``reason`` says which and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unreadable(ArchiveRejected):
    """No zip directory where one was looked for: for data found only by its tail, no zip."""


def check_archive(data: bytes, name: str, limits: ArchiveLimits) -> str | None:
    """Why ``data`` (an attachment called ``name``) is unscannable, or None.

    Data that is no archive at all is within the limits.
    """
    try:
        for _ in _Walker(limits, len(data), keep=False).walk(data, name, 1, top=True):
            pass
    except ArchiveRejected as exc:
        return exc.reason
    return None


def iter_members(data: bytes, name: str, limits: ArchiveLimits) -> Iterator[tuple[str, bytes]]:
    """Every member of the archive ``data`` with its decompressed content, nested ones too.

    Paths are joined with ``/`` below ``name``. A member that is an archive itself is yielded
    before its own members. Raises ``ArchiveRejected`` where ``check_archive`` gives a reason;
    what was yielded before that is no verdict on the rest.
    """
    yield from _Walker(limits, len(data), keep=True).walk(data, name, 1, top=True)


def archive_kind(data: bytes) -> str | None:
    """"zip", "tar", "gzip", "bzip2", "xz", "7z", "rar", "cab" or None, by magic number."""
    return _sniff(data, top=True)


# --- recognising formats ----------------------------------------------------------------------

_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08PK\x03\x04")
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b\x08", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07\x00", "rar"),
    (b"Rar!\x1a\x07\x01\x00", "rar"),
    (b"MSCF\x00\x00\x00\x00", "cab"),
)
_BZ2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")


def _sniff(data: bytes, *, top: bool) -> str | None:
    if data.startswith(_ZIP_STARTS):
        return "zip"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if _BZ2.match(data, 0, 10):
        return "bzip2"
    if _is_tar(data):
        return "tar"
    # Self-extracting and other prefixed zips are found from their end, as unzip finds them;
    # only for the outermost data, whose tail is at hand anyway.
    if top and _find_eocd(data) is not None:
        return "zip-tail"
    return None


def _is_tar(data: bytes) -> bool:
    if len(data) < 512:
        return False
    if data[257:262] == b"ustar":
        return True
    # Old (v7) tar has no magic: a header whose checksum is right is taken as one.
    try:
        tarfile.TarInfo.frombuf(data[:512], "utf-8", "surrogateescape")
    except tarfile.TarError:
        return False
    return True


_DRIVE = re.compile(r"[A-Za-z]:")


def unsafe_name(name: str) -> str | None:
    """Why a member name could write outside the extraction directory, or None."""
    if "\x00" in name:
        return "a NUL character"
    normal = name.replace("\\", "/")
    if normal.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(normal):
        return "a drive letter"
    if ".." in normal.split("/"):
        return "a '..' component"
    return None


# --- zip directory ----------------------------------------------------------------------------

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


def _find_eocd(data: bytes) -> int | None:
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
    eocd = _find_eocd(data)
    if eocd is None:
        raise _Unreadable(f"{where}: unreadable zip archive (no central directory)")
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
        raise _Unreadable(f"{where}: unreadable zip archive (central directory out of range)")
    entries: list[ZipEntry] = []
    pos = start
    while pos < eocd:
        if len(entries) >= max_entries:
            raise ArchiveRejected(f"{where}: more than {max_entries} archive members")
        if data[pos:pos + 4] != _CENTRAL or pos + 46 > eocd:
            raise _Unreadable(f"{where}: unreadable zip archive (bad central directory)")
        (flags, method, csize, usize, nlen, elen, clen, offset) = struct.unpack_from(
            "<8xHH8xLLHHH8xL", data, pos)
        raw = data[pos + 46:pos + 46 + nlen]
        extra = data[pos + 46 + nlen:pos + 46 + nlen + elen]
        pos += 46 + nlen + elen + clen
        if pos > eocd:
            raise _Unreadable(f"{where}: unreadable zip archive (bad central directory)")
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


# --- decompression in bounded steps -----------------------------------------------------------


class _Decompressor(Protocol):
    """bz2.BZ2Decompressor and lzma.LZMADecompressor alike."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes: ...


def _lzma1_raw(props: bytes, where: str) -> lzma.LZMADecompressor:
    """A raw LZMA (not LZMA2) decoder from the 5 property bytes zip and 7z store."""
    if len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise ArchiveRejected(f"{where}: corrupt LZMA properties")
    lc, rest = props[0] % 9, props[0] // 9
    lp, pb = rest % 5, rest // 5
    dict_size = int.from_bytes(props[1:5], "little")
    if dict_size > _LZMA_MAX_DICT:
        raise ArchiveRejected(f"{where}: LZMA dictionary of {dict_size} bytes")
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
            "id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}])
    except lzma.LZMAError:
        raise ArchiveRejected(f"{where}: corrupt LZMA properties") from None


def _lzma2_raw(props: bytes, where: str) -> lzma.LZMADecompressor:
    if len(props) != 1 or props[0] > 40:
        raise ArchiveRejected(f"{where}: corrupt LZMA2 properties")
    dict_size = (2 | (props[0] & 1)) << (props[0] // 2 + 11)
    if dict_size > _LZMA_MAX_DICT:
        raise ArchiveRejected(f"{where}: LZMA dictionary of {dict_size} bytes")
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
        "id": lzma.FILTER_LZMA2, "dict_size": dict_size}])


def _copy_chunks(src: memoryview) -> Iterator[bytes]:
    for pos in range(0, len(src), _OUT):
        yield bytes(src[pos:pos + _OUT])


class _Walker:
    """One walk over an archive tree, with the byte and member budget of the whole walk."""

    def __init__(self, limits: ArchiveLimits, input_size: int, *, keep: bool) -> None:
        self._limits = limits
        self._input_size = max(input_size, 1)
        self._keep = keep
        self._produced = 0
        self._members = 0

    # --- budget ---

    def _charge(self, count: int, where: str) -> None:
        self._produced += count
        limits = self._limits
        if self._produced > limits.max_uncompressed_bytes:
            raise ArchiveRejected(
                f"{where}: more than {limits.max_uncompressed_bytes} bytes uncompressed")
        if self._produced > limits.ratio_floor_bytes \
                and self._produced > limits.max_compression_ratio * self._input_size:
            raise ArchiveRejected(
                f"{where}: compression ratio over {limits.max_compression_ratio}:1")

    def _count(self, where: str) -> None:
        self._members += 1
        if self._members > self._limits.max_members:
            raise ArchiveRejected(
                f"{where}: more than {self._limits.max_members} archive members in all")

    # --- decompressors ---

    def _zlib(self, src: memoryview, wbits: int, where: str) -> Generator[bytes, None, int]:
        """Inflate one deflate/zlib/gzip stream; returns how many input bytes it used."""
        inflater = zlib.decompressobj(wbits)
        pos = 0
        try:
            while not inflater.eof:
                if inflater.unconsumed_tail:
                    data: bytes | memoryview = inflater.unconsumed_tail
                else:
                    data = src[pos:pos + _IN]
                    pos += len(data)
                out = inflater.decompress(data, _OUT)
                if out:
                    self._charge(len(out), where)
                    yield out
                elif not data:
                    break
        except zlib.error:
            raise ArchiveRejected(f"{where}: corrupt compressed data") from None
        if not inflater.eof:
            raise ArchiveRejected(f"{where}: truncated compressed data")
        return pos - len(inflater.unused_data)

    def _stream(self, decompressor: _Decompressor, src: memoryview, where: str, *,
                require_end: bool = True) -> Generator[bytes, None, int]:
        """Decompress with a bz2/lzma decompressor; returns how many input bytes it used."""
        pos = 0
        try:
            while not decompressor.eof:
                if decompressor.needs_input:
                    if pos >= len(src):
                        break
                    data: bytes | memoryview = src[pos:pos + _IN]
                    pos += len(data)
                else:
                    data = b""
                out = decompressor.decompress(data, _OUT)
                if out:
                    self._charge(len(out), where)
                    yield out
                elif not data:
                    break
        except (OSError, EOFError, ValueError, lzma.LZMAError):
            raise ArchiveRejected(f"{where}: corrupt compressed data") from None
        if require_end and not decompressor.eof:
            raise ArchiveRejected(f"{where}: truncated compressed data")
        return pos - len(decompressor.unused_data)

    # --- the tree ---

    def walk(self, data: bytes, where: str, depth: int, *,
             top: bool = False) -> Iterator[tuple[str, bytes]]:
        kind = _sniff(data, top=top)
        if kind is None:
            return
        if depth > self._limits.max_depth:
            raise ArchiveRejected(
                f"{where}: archives nested deeper than {self._limits.max_depth} levels")
        if kind == "zip-tail":
            try:
                read_zip_directory(data, self._limits.max_members, where)
            except _Unreadable:
                return  # an end record by chance, not a zip: nothing to open here
            kind = "zip"
        if kind == "zip":
            yield from self._zip(data, where, depth)
        elif kind == "tar":
            yield from self._tar(data, where, depth)
        elif kind in ("gzip", "bzip2", "xz"):
            yield from self._single(kind, data, where, depth)
        else:
            reason = _directory_only(kind, data, self._limits)
            if reason is not None:
                raise ArchiveRejected(f"{where}: {reason}")

    def _member(self, where: str, chunks: Iterable[bytes],
                depth: int) -> Iterator[tuple[str, bytes]]:
        """Read one member: held in memory only if wanted or if it is an archive itself."""
        self._count(where)
        held = bytearray()
        stream = iter(chunks)
        for chunk in stream:
            held += chunk
            if len(held) >= _SNIFF:
                break
        if self._keep or _sniff(bytes(held[:_SNIFF]), top=False) is not None:
            for chunk in stream:
                held += chunk
            content = bytes(held)
            del held
            if self._keep:
                yield where, content
            yield from self.walk(content, where, depth + 1)
        else:
            for _ in stream:
                pass  # decompressed and counted, then dropped

    def _zip(self, data: bytes, where: str, depth: int) -> Iterator[tuple[str, bytes]]:
        entries = read_zip_directory(data, self._limits.max_members, where)
        # Everything that needs no decompression is decided first: a password-protected or
        # path-traversing archive is refused before a single member is inflated.
        for entry in entries:
            problem = unsafe_name(entry.name)
            if problem is not None:
                raise ArchiveRejected(f"{where}: member name {entry.name!r} has {problem}")
            if entry.encrypted:
                raise ArchiveRejected(f"{where}: encrypted archive member {entry.name!r}")
        spans = [(self._data_start(data, entry, where), entry) for entry in entries]
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
            yield from self._member(member, self._zip_chunks(entry, src, member), depth)

    def _data_start(self, data: bytes, entry: ZipEntry, where: str) -> int:
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

    def _zip_chunks(self, entry: ZipEntry, src: memoryview,
                    where: str) -> Iterator[bytes]:
        if entry.method == 0:
            yield from _copy_chunks(src)
        elif entry.method == 8:
            yield from self._zlib(src, -15, where)
        elif entry.method == 12:
            yield from self._stream(bz2.BZ2Decompressor(), src, where)
        elif entry.method == 14:
            if len(src) < 4:
                raise ArchiveRejected(f"{where}: truncated compressed data")
            props_size = int.from_bytes(src[2:4], "little")
            decoder = _lzma1_raw(bytes(src[4:4 + props_size]), where)
            # Without the end-marker flag (bit 1) the stream just stops at its size.
            yield from self._stream(decoder, src[4 + props_size:], where,
                                    require_end=bool(entry.flags & 0x0002))
        else:
            # Deflate64, PKWARE implode and the like: nothing here can measure them, and
            # what cannot be measured is not let through.
            raise ArchiveRejected(f"{where}: unsupported compression method {entry.method}")

    def _tar(self, data: bytes, where: str, depth: int) -> Iterator[tuple[str, bytes]]:
        try:
            archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        except (tarfile.TarError, ValueError):
            raise ArchiveRejected(f"{where}: unreadable tar archive") from None
        count = 0
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, ValueError):
                raise ArchiveRejected(f"{where}: unreadable tar archive") from None
            if member is None:
                break
            count += 1
            if count > self._limits.max_members:
                raise ArchiveRejected(
                    f"{where}: more than {self._limits.max_members} archive members")
            problem = unsafe_name(member.name)
            if problem is None and (member.issym() or member.islnk()):
                problem = unsafe_name(member.linkname)
                if problem is not None:
                    problem = f"a link target with {problem}"
            if problem is not None:
                raise ArchiveRejected(f"{where}: member name {member.name!r} has {problem}")
            if member.issparse():
                raise ArchiveRejected(f"{where}: sparse tar member {member.name!r}")
            if not member.isreg():
                self._count(f"{where}/{member.name}")
                continue
            reader = archive.extractfile(member)
            if reader is None:
                continue
            path = f"{where}/{member.name}"
            yield from self._member(path, _read_chunks(reader, path), depth)
        # tarfile stops at the first bad block; GNU tar skips it and reads on.
        if _NONZERO.search(data, archive.offset) is not None:
            raise ArchiveRejected(f"{where}: data after the end of the tar archive")

    def _single(self, kind: str, data: bytes, where: str,
                depth: int) -> Iterator[tuple[str, bytes]]:
        inner = f"{where}/{_inner_name(where, kind)}"

        def chunks() -> Iterator[bytes]:
            # Concatenated streams are one file to gunzip, bunzip2 and xz alike.
            rest = memoryview(data)
            while True:
                if kind == "gzip":
                    used = yield from self._zlib(rest, 16 + zlib.MAX_WBITS, inner)
                elif kind == "bzip2":
                    used = yield from self._stream(bz2.BZ2Decompressor(), rest, inner)
                else:
                    used = yield from self._stream(
                        lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT),
                        rest, inner)
                rest = rest[used:]
                if used <= 0 or _sniff(bytes(rest[:16]), top=False) != kind:
                    return

        yield from self._member(inner, chunks(), depth)


_NONZERO = re.compile(rb"[^\x00]")


def _read_chunks(reader: IO[bytes], where: str) -> Iterator[bytes]:
    try:
        while chunk := reader.read(_OUT):
            yield chunk
    except tarfile.TarError:
        raise ArchiveRejected(f"{where}: truncated tar member") from None
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


# --- formats left to ClamAV: directory checks only ---------------------------------------------


def _directory_only(kind: str, data: bytes, limits: ArchiveLimits) -> str | None:
    if kind == "7z":
        return _seven_zip(data, limits)
    if kind == "rar":
        return _rar(data)
    return _cab(data, limits)


class _Malformed(Exception):
    pass


class _Reader:
    """7z header fields, every read bounds-checked (a hostile count must fail, not allocate)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self._data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self._data):
            raise _Malformed
        self.pos += 1
        return self._data[self.pos - 1]

    def take(self, count: int) -> bytes:
        if count < 0 or count > self.remaining():
            raise _Malformed
        self.pos += count
        return self._data[self.pos - count:self.pos]

    def number(self) -> int:
        """7z's variable-length number: leading one bits of the first byte count extra bytes."""
        first = self.byte()
        mask = 0x80
        value = 0
        for index in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * index))
            value |= self.byte() << (8 * index)
            mask >>= 1
        return value

    def count(self) -> int:
        """A number that counts things each taking at least one more byte of the header."""
        value = self.number()
        if value > self.remaining():
            raise _Malformed
        return value


_7Z_AES = b"\x06\xf1\x07\x01"
_7Z_LZMA = b"\x03\x01\x01"
_7Z_LZMA2 = b"\x21"


@dataclass
class _Folder:
    coders: list[tuple[bytes, bytes]]  # (coder id, properties)
    out_streams: int
    unpack_sizes: list[int]
    crc_defined: bool = False


@dataclass
class _Streams:
    pack_pos: int = 0
    pack_sizes: list[int] | None = None
    folders: list[_Folder] | None = None


def _7z_digests(reader: _Reader, count: int) -> list[bool]:
    if count > 8 * reader.remaining() + 8:
        raise _Malformed
    if reader.byte():
        defined = [True] * count
    else:
        bits = reader.take((count + 7) // 8)
        defined = [bool(bits[i // 8] & (0x80 >> (i % 8))) for i in range(count)]
    reader.take(4 * sum(defined))
    return defined


def _7z_folder(reader: _Reader) -> _Folder:
    coders = []
    ins = outs = 0
    for _ in range(reader.count()):
        flags = reader.byte()
        if flags & 0x80:
            raise _Malformed  # "alternative methods": never written by any 7-Zip
        coder_id = reader.take(flags & 0x0F)
        ins_here, outs_here = (reader.number(), reader.number()) if flags & 0x10 else (1, 1)
        properties = reader.take(reader.number()) if flags & 0x20 else b""
        coders.append((coder_id, properties))
        ins += ins_here
        outs += outs_here
    bind_pairs = outs - 1
    packed = ins - bind_pairs
    if not coders or bind_pairs < 0 or packed < 1 or bind_pairs > reader.remaining():
        raise _Malformed
    for _ in range(2 * bind_pairs):
        reader.number()
    if packed > 1:
        for _ in range(packed):
            reader.number()
    return _Folder(coders, outs, [])


def _7z_streams(reader: _Reader) -> _Streams:
    streams = _Streams()
    while (kind := reader.byte()) != 0x00:
        if kind == 0x06:  # pack info
            streams.pack_pos = reader.number()
            count = reader.count()
            while (field := reader.byte()) != 0x00:
                if field == 0x09:
                    streams.pack_sizes = [reader.number() for _ in range(count)]
                elif field == 0x0A:
                    _7z_digests(reader, count)
                else:
                    raise _Malformed
        elif kind == 0x07:  # unpack info: the folders and their coders
            if reader.byte() != 0x0B:
                raise _Malformed
            count = reader.count()
            if reader.byte() != 0:
                raise _Malformed  # "external": folders stored elsewhere, never written
            folders = [_7z_folder(reader) for _ in range(count)]
            if reader.byte() != 0x0C:
                raise _Malformed
            for folder in folders:
                folder.unpack_sizes = [reader.number() for _ in range(folder.out_streams)]
            while (field := reader.byte()) != 0x00:
                if field != 0x0A:
                    raise _Malformed
                for folder, defined in zip(folders, _7z_digests(reader, count), strict=True):
                    folder.crc_defined = defined
            streams.folders = folders
        elif kind == 0x08:  # substreams: files per folder; read only to get past it
            folders = streams.folders or []
            per_folder = [1] * len(folders)
            field = reader.byte()
            if field == 0x0D:
                per_folder = [reader.number() for _ in folders]
                field = reader.byte()
            if field == 0x09:
                for files in per_folder:
                    if files - 1 > reader.remaining():
                        raise _Malformed
                    for _ in range(files - 1):
                        reader.number()
                field = reader.byte()
            if field == 0x0A:
                unknown = sum(files for files, folder in zip(per_folder, folders, strict=True)
                              if not (files == 1 and folder.crc_defined))
                _7z_digests(reader, unknown)
                field = reader.byte()
            if field != 0x00:
                raise _Malformed
        else:
            raise _Malformed
    return streams


def _7z_decode_header(data: bytes, streams: _Streams) -> bytes | None:
    """The header that an encoded header packs, or None for coders not read here."""
    folders = streams.folders or []
    if len(folders) != 1 or len(folders[0].coders) != 1 or not streams.pack_sizes:
        return None
    coder_id, properties = folders[0].coders[0]
    size = folders[0].unpack_sizes[0]
    start = 32 + streams.pack_pos
    packed = data[start:start + streams.pack_sizes[0]]
    if size > _7Z_MAX_HEADER or start + streams.pack_sizes[0] > len(data):
        raise _Malformed
    try:
        if coder_id == _7Z_LZMA:
            decoder = _lzma1_raw(properties, "7z header")
        elif coder_id == _7Z_LZMA2:
            decoder = _lzma2_raw(properties, "7z header")
        else:
            return None
        header = decoder.decompress(packed, size)
    except (ArchiveRejected, lzma.LZMAError):
        raise _Malformed from None
    if len(header) != size:
        raise _Malformed
    return header


def _seven_zip(data: bytes, limits: ArchiveLimits) -> str | None:
    if len(data) < 32 or zlib.crc32(data[12:32]) != int.from_bytes(data[8:12], "little"):
        return "unreadable 7z archive (bad start header)"
    offset, size, crc = struct.unpack_from("<QQL", data, 12)
    if size == 0:
        return None  # an empty archive
    if 32 + offset + size > len(data):
        return "unreadable 7z archive (truncated, or one volume of several)"
    header = data[32 + offset:32 + offset + size]
    if zlib.crc32(header) != crc:
        return "unreadable 7z archive (header CRC)"
    try:
        reader = _Reader(header)
        kind = reader.byte()
        if kind == 0x17:  # an encoded (compressed, maybe encrypted) header
            streams = _7z_streams(reader)
            if any(coder == _7Z_AES for folder in streams.folders or []
                   for coder, _ in folder.coders):
                return "encrypted archive (7z with encrypted headers)"
            decoded = _7z_decode_header(data, streams)
            if decoded is None:
                return None
            reader = _Reader(decoded)
            kind = reader.byte()
        if kind != 0x01:
            raise _Malformed
        return _7z_header(reader, len(data), limits)
    except _Malformed:
        return "unreadable 7z archive (malformed header)"


def _7z_header(reader: _Reader, input_size: int, limits: ArchiveLimits) -> str | None:
    while (kind := reader.byte()) != 0x00:
        if kind == 0x02:  # archive properties
            while reader.byte() != 0x00:
                reader.take(reader.number())
        elif kind == 0x03:  # additional streams
            _7z_streams(reader)
        elif kind == 0x04:  # main streams
            folders = _7z_streams(reader).folders or []
            if any(coder == _7Z_AES for folder in folders for coder, _ in folder.coders):
                return "encrypted archive member (7z)"
            # Declared sizes can only make things worse here: a 7z bomb is refused by what
            # it admits to; what it hides is ClamAV's, whose own limits apply.
            declared = sum(max(folder.unpack_sizes, default=0) for folder in folders)
            if declared > limits.max_uncompressed_bytes:
                return f"7z archive declares {declared} bytes uncompressed"
            if declared > limits.ratio_floor_bytes \
                    and declared > limits.max_compression_ratio * input_size:
                return f"compression ratio over {limits.max_compression_ratio}:1 (7z)"
        elif kind == 0x05:  # files
            files = reader.number()
            if files > limits.max_members:
                return f"more than {limits.max_members} archive members ({files}, 7z)"
            while (prop := reader.byte()) != 0x00:
                body = reader.take(reader.number())
                if prop == 0x11 and body[:1] == b"\x00":  # names, UTF-16LE, each 0-terminated
                    names = body[1:].decode("utf-16-le", "replace").split("\x00")
                    for name in names[:files]:
                        problem = unsafe_name(name)
                        if problem is not None:
                            return f"member name {name!r} has {problem} (7z)"
            return None
        else:
            raise _Malformed
    return None


def _rar(data: bytes) -> str | None:
    """RAR's header encryption, from the first header; file contents are ClamAV's."""
    if data.startswith(b"Rar!\x1a\x07\x01\x00"):
        # RAR 5: CRC32, header size (vint), header type (vint); type 4 = archive encryption.
        reader = _RarVint(data, 12)
        try:
            reader.vint()
            if reader.vint() == 4:
                return "encrypted archive (RAR with encrypted headers)"
        except _Malformed:
            return "unreadable RAR archive"
        return None
    # RAR 4: the main header (type 0x73) follows the 7-byte marker; flag 0x80 = headers
    # encrypted with a password.
    if len(data) < 7 + 7:
        return "unreadable RAR archive"
    head_type, flags = struct.unpack_from("<BH", data, 7 + 2)
    if head_type != 0x73:
        return "unreadable RAR archive"
    if flags & 0x0080:
        return "encrypted archive (RAR with encrypted headers)"
    return None


class _RarVint:
    def __init__(self, data: bytes, pos: int) -> None:
        self._data = data
        self._pos = pos

    def vint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            if self._pos >= len(self._data):
                raise _Malformed
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise _Malformed


def _cab(data: bytes, limits: ArchiveLimits) -> str | None:
    """A cabinet's file count, declared sizes and names, from its header and file entries."""
    if len(data) < 36:
        return "unreadable cabinet"
    (files_offset,) = struct.unpack_from("<L", data, 16)
    files, flags = struct.unpack_from("<HH", data, 28)
    if flags & 0x0003:
        return "cabinet is one of a set of several"
    if files > limits.max_members:
        return f"more than {limits.max_members} archive members ({files}, cabinet)"
    pos = files_offset
    declared = 0
    for _ in range(files):
        if pos + 16 > len(data):
            return "unreadable cabinet (truncated file list)"
        (size,) = struct.unpack_from("<L", data, pos)
        end = data.find(b"\x00", pos + 16, pos + 16 + 257)
        if end < 0:
            return "unreadable cabinet (bad file name)"
        name = data[pos + 16:end].decode("utf-8", "replace")
        problem = unsafe_name(name)
        if problem is not None:
            return f"member name {name!r} has {problem} (cabinet)"
        declared += size
        pos = end + 1
    if declared > limits.max_uncompressed_bytes:
        return f"cabinet declares {declared} bytes uncompressed"
    if declared > limits.ratio_floor_bytes \
            and declared > limits.max_compression_ratio * len(data):
        return f"compression ratio over {limits.max_compression_ratio}:1 (cabinet)"
    return None
