"""Split a message into its envelope headers and its MIME entity, and join them again.

Signing and encryption protect the *entity*: the Content-* headers and the body. The other
header fields (From, To, Subject, Date, Message-ID, Received ...) stay outside, where the
next hop and the recipient's client need them. Decryption is the reverse: the decrypted
entity goes back under the outer headers of the encrypted message.

Everything works on the raw bytes (CRLF line endings, as the SMTP edge stores them), so
nothing is re-wrapped or re-encoded on the way.
"""

from __future__ import annotations

from gateway.mime.headers import (
    CRLF,
    field_name,
    header_block_alone,
    header_fields,
    split_header_block,
)

DEFAULT_CONTENT_TYPE = b"Content-Type: text/plain; charset=us-ascii"


def _is_entity_field(name: str) -> bool:
    return name.startswith("content-") or name == "mime-version"


def split_entity(message: bytes) -> tuple[list[bytes], bytes]:
    """Outer header fields (each with its folding) and the MIME entity (headers + body).

    A message without a Content-Type is plain US-ASCII text (RFC 2045 section 5.2); the
    entity gets that header explicitly, so the other side does not have to guess.
    """
    block, body = split_header_block(message)
    outer: list[bytes] = []
    inner: list[bytes] = []
    for field in header_fields(block):
        name = field_name(field)
        if name == "mime-version":
            continue
        (inner if _is_entity_field(name) else outer).append(field)
    if not any(field_name(f) == "content-type" for f in inner):
        inner.insert(0, DEFAULT_CONTENT_TYPE)
    return outer, CRLF.join(inner) + CRLF + CRLF + body


def join_entity(outer: list[bytes], entity: bytes) -> bytes:
    """The outer header fields, MIME-Version, then the entity: a complete message.

    Header fields inside the entity other than Content-* are protected headers (a client
    that encrypts Subject, From and To puts the real ones inside, RFC 7508 and the LAMPS
    header-protection draft): they replace the outer fields of the same name, which are
    often placeholders such as "Subject: ...", instead of appearing twice.
    """
    entity_block, body = split_header_block(entity)
    fields = [f for f in header_fields(entity_block) if field_name(f) != "mime-version"]
    protected = [f for f in fields if not _is_entity_field(field_name(f))]
    replaced = {field_name(f) for f in protected}
    kept = [f for f in outer
            if not _is_entity_field(field_name(f)) and field_name(f) not in replaced]
    content = [f for f in fields if _is_entity_field(field_name(f))]
    return (CRLF.join([*kept, *protected, b"MIME-Version: 1.0", *content])
            + CRLF + CRLF + body)


def header_value(message: bytes, name: str) -> str | None:
    """The first value of header ``name``, unfolded, or None."""
    block = header_block_alone(message)
    wanted = name.lower()
    for field in header_fields(block):
        if field_name(field) == wanted:
            _, _, value = field.partition(b":")
            return " ".join(value.decode("utf-8", "replace").split())
    return None
