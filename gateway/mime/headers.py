"""Header edits on the raw bytes, so the rest of the message stays exactly as it came.

Re-serialising a parsed message would re-wrap lines and re-encode parts, which breaks
signatures and changes what the recipient sees; editing the header block in place does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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


def prepend_headers(data: bytes, headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        # Values are ours, but may quote outside facts: never let them open a new header.
        clean = " ".join(value.replace("\r", " ").replace("\n", " ").split())
        lines.append(f"{name}: {clean}".encode() + CRLF)
    return b"".join(lines) + data
