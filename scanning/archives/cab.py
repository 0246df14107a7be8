"""CAB, left to ClamAV to unpack: only the header and the file entries are read here."""

from __future__ import annotations

import struct

from scanning.archives.limits import ArchiveLimits
from scanning.archives.names import unsafe_name


def cab_problem(data: bytes, limits: ArchiveLimits) -> str | None:
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
