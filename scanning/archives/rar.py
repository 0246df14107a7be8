"""RAR, left to ClamAV to unpack: only the first headers are read here, for header
encryption (RAR 4 and 5)."""

from __future__ import annotations

import struct


class _Malformed(Exception):
    pass


def rar_problem(data: bytes) -> str | None:
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
