"""Which archive format data is, by magic number."""

from __future__ import annotations

import re
import tarfile

from scanning.archives.zip import find_eocd

SNIFF_BYTES = 512  # enough for every magic below, tar's at offset 257 included

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


def sniff(data: bytes, *, top: bool) -> str | None:
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
    if top and find_eocd(data) is not None:
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
