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

The modules: ``walker`` walks an archive tree within one budget (``limits``), ``sniff`` tells
the format by magic, ``zip``, ``tar`` and ``compressed`` (gzip, bzip2, xz) read members through
``decompress``; ``seven_zip``, ``rar`` and ``cab`` read only the directory. Callers use the
names below.
"""

from __future__ import annotations

from collections.abc import Iterator

from scanning.archives.limits import ArchiveLimits, ArchiveRejected
from scanning.archives.sniff import sniff
from scanning.archives.walker import Surveyor, Walker

__all__ = ["ArchiveLimits", "ArchiveRejected", "Surveyor", "archive_kind", "check_archive",
           "iter_members"]


def check_archive(data: bytes, name: str, limits: ArchiveLimits) -> str | None:
    """Why ``data`` (an attachment called ``name``) is unscannable, or None.

    Data that is no archive at all is within the limits.
    """
    try:
        for _ in Walker(limits, len(data), keep=False).walk(data, name, 1, top=True):
            pass
    except ArchiveRejected as exc:
        return exc.reason
    return None


def iter_members(data: bytes, name: str, limits: ArchiveLimits, *,
                 surveyor: Surveyor | None = None) -> Iterator[tuple[str, bytes]]:
    """Every member of the archive ``data`` with its decompressed content, nested ones too.

    Paths are joined with ``/`` below ``name``. A member that is an archive itself is yielded
    before its own members. Raises ``ArchiveRejected`` where ``check_archive`` gives a reason;
    what was yielded before that is no verdict on the rest. With a ``surveyor``, a large
    member in which its checks could find nothing is walked past (counted against the
    limits, not held) and not yielded.
    """
    yield from Walker(limits, len(data), keep=True, surveyor=surveyor).walk(data, name, 1,
                                                                            top=True)


def archive_kind(data: bytes) -> str | None:
    """"zip", "tar", "gzip", "bzip2", "xz", "7z", "rar", "cab" or None, by magic number."""
    return sniff(data, top=True)
