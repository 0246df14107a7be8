"""7z, left to ClamAV to unpack: only its header is read here (decoded if LZMA-compressed), for
encrypted headers or members, the number of files, their names and the declared sizes."""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass

from scanning.archives.decompress import lzma1_raw, lzma2_raw
from scanning.archives.limits import ArchiveLimits, ArchiveRejected
from scanning.archives.names import unsafe_name

_7Z_MAX_HEADER = 16 * 1024 * 1024


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
            decoder = lzma1_raw(properties, "7z header")
        elif coder_id == _7Z_LZMA2:
            decoder = lzma2_raw(properties, "7z header")
        else:
            return None
        header = decoder.decompress(packed, size)
    except (ArchiveRejected, lzma.LZMAError):
        raise _Malformed from None
    if len(header) != size:
        raise _Malformed
    return header


def seven_zip_problem(data: bytes, limits: ArchiveLimits) -> str | None:
    """Why the 7z ``data`` is refused by its header, or None."""
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
