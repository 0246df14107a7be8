"""Header edits on the raw bytes, so the rest of the message stays exactly as it came.

Re-serialising a parsed message would re-wrap lines and re-encode parts, which breaks
signatures and changes what the recipient sees; editing the header block in place does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from email.header import Header

CRLF = b"\r\n"


def split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """Header block (without the blank line) and body."""
    end, body = header_block_bounds(data)
    return data[:end], data[body:]


def header_block_alone(data: bytes) -> bytes:
    """The header block (without the blank line), without copying the body: a caller that
    throws the body away made a whole copy of a 50 MB message for nothing."""
    return data[:header_block_bounds(data)[0]]


def header_block_bounds(data: bytes) -> tuple[int, int]:
    """Where the header block (without the blank line) ends and the body starts."""
    if data.startswith(CRLF):
        return 0, 2
    end = data.find(CRLF + CRLF)
    if end < 0:
        return len(data), len(data)
    return end, end + 4


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


def remove_fields(data: bytes, drop: Callable[[bytes], bool]) -> bytes:
    """``data`` without the header fields (with their folding) for which ``drop`` is true.

    ``data`` itself when nothing is dropped and the header block ends in a blank line as
    usual: every message passes here, mostly with nothing to remove, and a copy would cost
    the size of the message (50 MB for a large attachment) for nothing.
    """
    end, body = header_block_bounds(data)
    block = data[:end]
    fields = header_fields(block)
    kept = [f for f in fields if not drop(f)]
    if len(kept) == len(fields) and block and data.startswith(CRLF + CRLF, len(block)):
        return data  # what the join below would give, byte for byte
    with memoryview(data) as view:  # the body is copied once, into the result
        return b"".join((CRLF.join(kept), CRLF + CRLF, view[body:]))


def remove_headers(data: bytes, drop: Callable[[str], bool]) -> bytes:
    return remove_fields(data, lambda field: drop(field_name(field)))


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


def header_block(headers: Mapping[str, str]) -> bytes:
    """The fields ``headers``, each CRLF-terminated, to be put in front of a message."""
    return b"".join(header_field(n, v) for n, v in headers.items())


def prepend_headers(data: bytes, headers: Mapping[str, str]) -> bytes:
    return header_block(headers) + data


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


AUTHENTICATION_RESULTS_FIELDS = frozenset({"authentication-results",
                                           "arc-authentication-results"})
# RFC 8601 section 2.2: authserv-id is an RFC 2045 "value", a token or a quoted string.
_AUTHSERV_ID = re.compile(
    rb'[ \t\r\n]*(?:"((?:[^"\\]|\\.)*)"|([^ \t\r\n()<>@,;:\\"/\[\]?=\x00-\x1f\x7f]+))',
    re.DOTALL)
# RFC 8617 section 4.1.1: ARC-Authentication-Results starts with "i=<instance>;".
_ARC_INSTANCE = re.compile(rb"[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*[0-9]+[ \t\r\n]*;",
                           re.IGNORECASE)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)


def authserv_id(field: bytes) -> str | None:
    """The authserv-id an Authentication-Results or ARC-Authentication-Results field names.

    The first item of the value after optional comments and white space (RFC 8601 section
    2.2); a version number, a ";" and the results may follow. None for any other field, or
    if no authserv-id can be read.
    """
    name = field_name(field)
    if name not in AUTHENTICATION_RESULTS_FIELDS:
        return None
    arc = name == "arc-authentication-results"
    value = _without_comments(field.partition(b":")[2], up_to_semicolon=2 if arc else 1)
    at = 0
    if arc:
        # Without its instance tag the field is malformed; read it like the plain one, so a
        # forged claim is not kept for a missing "i=".
        instance = _ARC_INSTANCE.match(value)
        at = instance.end() if instance is not None else 0
    found = _AUTHSERV_ID.match(value, at)
    if found is None:
        return None
    quoted, token = found.groups()
    text = _QUOTED_PAIR.sub(rb"\1", quoted) if quoted is not None else token
    return text.decode("ascii", "replace") or None


def claims_authserv_id(field: bytes, own_id: str) -> bool:
    """Whether ``field`` is an (ARC-)Authentication-Results field in ``own_id``'s name.

    Compared case-insensitively, as host names are; a trailing dot makes no difference.
    """
    claimed = authserv_id(field)
    return claimed is not None and _host_key(claimed) == _host_key(own_id)


def _host_key(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _without_comments(value: bytes, up_to_semicolon: int) -> bytes:
    """The start of ``value`` with each (nested, escaped) comment replaced by a space, up to
    the ``up_to_semicolon``-th ";" outside comments and quoted strings (what follows does
    not matter here and may be long). An unclosed comment runs to the end."""
    out = bytearray()
    depth = 0
    quoted = False
    at = 0
    while at < len(value) and up_to_semicolon:
        char = value[at : at + 1]
        if char == b"\\" and (depth or quoted):
            if not depth:
                out += value[at : at + 2]
            at += 2
            continue
        if quoted:
            quoted = char != b'"'
            out += char
        elif char == b"(":
            if not depth:
                out += b" "
            depth += 1
        elif char == b")" and depth:
            depth -= 1
        elif not depth:
            quoted = char == b'"'
            up_to_semicolon -= char == b";"
            out += char
        at += 1
    return bytes(out)
