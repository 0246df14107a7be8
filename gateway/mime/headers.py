"""Header edits on the raw bytes, so the rest of the message stays exactly as it came.

Re-serialising a parsed message would re-wrap lines and re-encode parts, which breaks
signatures and changes what the recipient sees; editing the header block in place does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from email.header import Header

CRLF = b"\r\n"


def split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """Header block (without the blank line) and body."""
    if data.startswith(CRLF):
        return b"", data[2:]
    end = data.find(CRLF + CRLF)
    if end < 0:
        return data, b""
    return data[:end], data[end + 4 :]


def header_fields(block: bytes) -> list[bytes]:
    """Each field with its continuation lines, CRLFs inside kept."""
    fields: list[bytes] = []
    for line in block.split(CRLF) if block else []:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += CRLF + line
        else:
            fields.append(line)
    return fields


def field_name(field: bytes) -> str:
    name, _, _ = field.partition(b":")
    return name.strip().decode("ascii", "replace").lower()


def remove_headers(data: bytes, drop: Callable[[str], bool]) -> bytes:
    block, body = split_header_block(data)
    kept = [f for f in header_fields(block) if not drop(field_name(f))]
    return CRLF.join(kept) + CRLF + CRLF + body


def header_field(name: str, value: str) -> bytes:
    """One header field, CRLF-terminated, safe to put into a message.

    Values are ours, but may quote outside facts: line breaks are folded away so they can
    never open a new header. Non-ASCII text (a category "ärztlicher Bericht", a signer's
    name) is RFC 2047-encoded, because header fields must stay 7-bit on the way.
    """
    clean = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    if not clean.isascii():
        clean = Header(clean, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {clean}".encode("ascii") + CRLF


def prepend_headers(data: bytes, headers: Mapping[str, str]) -> bytes:
    return b"".join(header_field(n, v) for n, v in headers.items()) + data


def replace_header(data: bytes, name: str, value: str) -> bytes:
    """Set header ``name`` to ``value`` where it stands (the first one; others removed)."""
    block, body = split_header_block(data)
    wanted = name.lower()
    fields: list[bytes] = []
    placed = False
    for field in header_fields(block):
        if field_name(field) != wanted:
            fields.append(field)
        elif not placed:
            fields.append(header_field(name, value)[:-2])
            placed = True
    if not placed:
        fields.insert(0, header_field(name, value)[:-2])
    return CRLF.join(fields) + CRLF + CRLF + body
