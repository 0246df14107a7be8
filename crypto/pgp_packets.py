"""OpenPGP packet framing (RFC 4880 4.2 / RFC 9580 4.2), read strictly, for the in-process path.

``crypto.pgp_backend.inspect_message`` only *looks* at outer headers and tolerates damage;
this module reads whole packets for ``crypto.pgp_session``, which decrypts gpg's usual output
itself (pysequoia cannot verify a signature inside a compressed encrypted message). Every
inconsistency raises ``PacketFormatError``; callers turn it into the uniform decryption
failure, so no parsing detail becomes visible to a sender.

Both header formats are read, including old-format indeterminate lengths and new-format
partial body lengths: gpg writes those for data of unknown size (anything piped to it), for
the encrypted data packet, the compressed packet and the literal packet alike.
"""

from __future__ import annotations

import bz2
import re
import zlib
from dataclasses import dataclass

from crypto.pgp_backend import PgpTooLarge, dearmor

TAG_PKESK, TAG_SIGNATURE, TAG_SKESK, TAG_ONE_PASS = 1, 2, 3, 4
TAG_SECRET_KEY, TAG_PUBLIC_KEY, TAG_SECRET_SUBKEY, TAG_COMPRESSED = 5, 6, 7, 8
TAG_SED, TAG_MARKER, TAG_LITERAL, TAG_USER_ID, TAG_PUBLIC_SUBKEY = 9, 10, 11, 13, 14
TAG_SEIPD, TAG_MDC, TAG_AEAD, TAG_PADDING = 18, 19, 20, 21

# Room for the packets around the literal data (one-pass signature, signature, literal
# header) when bounding decompressed output by the content limit.
PACKET_OVERHEAD = 64 * 1024

# RFC 4880 9.3 compression algorithm ids.
COMPRESSION_NONE, COMPRESSION_ZIP, COMPRESSION_ZLIB, COMPRESSION_BZIP2 = 0, 1, 2, 3

_ARMOR_BLOCK = re.compile(
    rb"-----BEGIN PGP [A-Z0-9 ,/]+-----.*?(?:-----END PGP [A-Z0-9 ,/]+-----|\Z)", re.DOTALL)


class PacketFormatError(ValueError):
    """The data is not a well-formed sequence of OpenPGP packets."""


@dataclass(frozen=True, slots=True)
class Packet:
    tag: int
    body: bytes


def read_packets(buf: bytes) -> list[Packet]:
    """Every packet in ``buf``, bodies joined across partial-length chunks.

    Truncation anywhere (a header or body running past the end) raises: a damaged message
    must fail as a whole, not yield a shorter but "complete" prefix.
    """
    view = memoryview(buf)
    packets: list[Packet] = []
    pos, end = 0, len(buf)
    while pos < end:
        ctb = buf[pos]
        if not ctb & 0x80:
            raise PacketFormatError("not a packet header")
        pos += 1
        if ctb & 0x40:  # new format: the tag is the low six bits
            tag = ctb & 0x3F
            body, pos = _new_format_body(buf, view, pos)
        else:  # old format: four tag bits and a length type
            tag = (ctb >> 2) & 0x0F
            length_type = ctb & 3
            if length_type == 3:  # indeterminate: the packet runs to the end of the data
                body, pos = bytes(view[pos:]), end
            else:
                size = (1, 2, 4)[length_type]
                length = int.from_bytes(_take(buf, pos, size), "big")
                pos += size
                body = _take(buf, pos, length)
                pos += length
        if tag == 0:
            raise PacketFormatError("reserved packet tag 0")
        packets.append(Packet(tag, body))
    return packets


def _new_format_body(buf: bytes, view: memoryview, pos: int) -> tuple[bytes, int]:
    chunks: list[memoryview] = []
    while True:
        first = _take(buf, pos, 1)[0]
        pos += 1
        if first < 192:
            length = first
        elif first < 224:
            length = ((first - 192) << 8) + _take(buf, pos, 1)[0] + 192
            pos += 1
        elif first == 255:
            length = int.from_bytes(_take(buf, pos, 4), "big")
            pos += 4
        else:  # a partial body length: this chunk, then another length header follows
            length = 1 << (first & 0x1F)
            _need(buf, pos, length)
            chunks.append(view[pos : pos + length])
            pos += length
            continue
        _need(buf, pos, length)
        chunks.append(view[pos : pos + length])
        pos += length
        body = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)
        return body, pos


def _take(buf: bytes, pos: int, size: int) -> bytes:
    """``buf[pos:pos+size]``, or PacketFormatError if the data ends first."""
    _need(buf, pos, size)
    return buf[pos : pos + size]


def _need(buf: bytes, pos: int, size: int) -> None:
    if size < 0 or pos + size > len(buf):
        raise PacketFormatError("truncated packet")


def read_mpi(body: bytes, pos: int) -> tuple[bytes, int]:
    """An MPI's magnitude bytes (big-endian, as stored) and the position after it."""
    bits = int.from_bytes(_take(body, pos, 2), "big")
    size = (bits + 7) // 8
    return _take(body, pos + 2, size), pos + 2 + size


def mpi_int(body: bytes, pos: int) -> tuple[int, int]:
    raw, pos = read_mpi(body, pos)
    return int.from_bytes(raw, "big"), pos


def key_blocks(data: bytes) -> list[bytes]:
    """The binary packets of every armored block in ``data`` (or ``data`` if it is binary)."""
    blocks = _ARMOR_BLOCK.findall(data)
    if not blocks:
        return [data]
    return [dearmor(block) for block in blocks]


def literal_content(body: bytes) -> bytes:
    """The data of a literal data packet (RFC 4880 5.9): format, name, date, then data."""
    name_length = _take(body, 1, 1)[0]
    start = 2 + name_length + 4
    _take(body, 0, start)
    return body[start:]


def inflate(body: bytes, max_output: int) -> bytes:
    """The packets inside a compressed data packet, refusing more than ``max_output`` bytes
    of content (plus ``PACKET_OVERHEAD`` for the packets around it).

    The bound is applied *while* decompressing (``max_length``), so a decompression bomb
    costs at most that much memory, never its full expansion.
    """
    limit = max_output + PACKET_OVERHEAD
    algorithm = _take(body, 0, 1)[0]
    data = memoryview(body)[1:]
    if algorithm == COMPRESSION_NONE:
        out = bytes(data)
    elif algorithm in (COMPRESSION_ZIP, COMPRESSION_ZLIB):
        # ZIP is a raw deflate stream (negative window bits), ZLIB one with header and Adler-32.
        inflater = zlib.decompressobj(-15 if algorithm == COMPRESSION_ZIP else 15)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            raise PacketFormatError("bad deflate stream") from None
    elif algorithm == COMPRESSION_BZIP2:
        try:
            out = bz2.BZ2Decompressor().decompress(data, limit + 1)
        except (OSError, EOFError):
            raise PacketFormatError("bad bzip2 stream") from None
    else:
        raise PacketFormatError(f"unknown compression algorithm {algorithm}")
    # With max_length, output short of the bound means all input was consumed.
    if len(out) > limit:
        raise PgpTooLarge(f"decrypted content exceeds {max_output} bytes; refused")
    return out
