"""The email package's parse of a message, with each header field parsed only once.

Under ``policy.default`` every ``get()`` runs the header value parser again: a part's
Content-Type costs 50-90 µs to read, and the parser itself (for every line of a multipart),
the stages and the scanner ask for it dozens of times per message. ``policy.default`` stays,
because the scanner's type policy and the raw structure check are written against what it
returns (RFC 2047 and RFC 2231 decoded file names, a content type without its comments);
only the repeated parsing of the same field goes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import Policy
from typing import Any

from crypto.mime_policy import MIME_POLICY
from gateway.mime.headers import CRLF, header_block_alone


class FieldCachingMessage(EmailMessage):
    """An ``EmailMessage`` whose ``get()`` (and so ``get_content_type``, ``get_param``,
    ``get_filename``, ``get_boundary`` ...) parses a field once and then hands back the same
    header object, exactly what ``policy.default`` would have made of it again."""

    def __init__(self, policy: Policy | None = None) -> None:
        super().__init__(policy)
        # lower-cased name -> (the stored name, the stored raw value, the policy, the parsed
        # header)
        self._parsed_fields: dict[str, tuple[str, Any, Policy, Any]] = {}

    def get(self, name: str, failobj: Any = None) -> Any:
        wanted = name.lower()
        # Message.get's own loop (CPython 3.11), over the stored (name, raw value) pairs.
        fields: list[tuple[str, Any]] = self._headers  # type: ignore[attr-defined]
        for stored_name, value in fields:
            if stored_name.lower() == wanted:
                cached = self._parsed_fields.get(wanted)
                # By identity of the stored value: any change to the header list (replace,
                # set_param, del) stores a new value, and the entry holds the old one alive,
                # so its id cannot be reused by the new one. A policy set on the message
                # afterwards parses anew, under that policy.
                if (cached is not None and cached[0] == stored_name and cached[1] is value
                        and cached[2] is self.policy):
                    return cached[3]
                parsed = self.policy.header_fetch_parse(stored_name, value)
                self._parsed_fields[wanted] = (stored_name, value, self.policy, parsed)
                return parsed
        return failobj

    # The body of a large leaf is read from the raw bytes when something asks for it, not
    # at the parse (``parse_message``): the scanner decodes it from the raw bytes anyway
    # (``unread_body``), so the text would be one more whole copy of the attachment held
    # through the stages. Everything the email package does reads ``_payload``, which
    # makes the text then, exactly as the parser would have.
    @property
    def _payload(self) -> Any:
        state = self.__dict__
        unread = state.get("_unread")
        if unread is not None:
            data, start, end = unread
            with memoryview(data) as view:
                state["_payload_value"] = str(view[start:end], "ascii", "surrogateescape")
            state["_unread"] = None
        return state.get("_payload_value")

    @_payload.setter
    def _payload(self, value: Any) -> None:
        self.__dict__["_unread"] = None
        self.__dict__["_payload_value"] = value

    def is_multipart(self) -> bool:
        # Without reading an unread body: only a list of parts is multipart.
        if self.__dict__.get("_unread") is not None:
            return False
        return super().is_multipart()

    @property
    def unread_body(self) -> tuple[bytes, int, int] | None:
        """(the raw bytes, start, end) of a body no one has read yet, else None."""
        unread: tuple[bytes, int, int] | None = self.__dict__.get("_unread")
        return unread

    def leave_body_unread(self, data: bytes, start: int, end: int) -> None:
        self.__dict__["_payload_value"] = None
        self.__dict__["_unread"] = (data, start, end)


# Leaf bodies from this size on stay unread until asked for (FieldCachingMessage._payload).
UNREAD_BODY_BYTES = 1 << 20

# The parser is fed in pieces of this size. ``BytesParser.parsebytes`` decodes the whole
# message into one str and pushes it at once, so the parser's line list of every body and
# that str exist side by side: 7.7 times a message with a 10 MB attachment in traced
# memory, against 2.7 times fed in pieces (the same parse: the feed parser keeps a line cut
# between two pieces, a CR before the LF that ends it included, for the next piece).
_FEED_BYTES = 1 << 16


def parse_message(data: bytes | bytearray | memoryview,
                  leaf_bodies: Sequence[tuple[int, int]] = ()) -> EmailMessage:
    """The full parse under ``policy.default``, every part a ``FieldCachingMessage``.

    ``leaf_bodies``: where in ``data`` the bodies of leaf parts stand, as
    ``scanning.parts.raw_structure`` found them. The parser then gets each as one short
    stand-in line and the part its body afterwards, in one piece: the feed parser reads a
    body line by line against every enclosing boundary (most of its time on a message with
    an attachment) and keeps the lines in a list until the boundary (2.7 times the body).
    The tree is the same; should the stand-ins not come back one by one as the payloads of
    leaves (the parser read the structure otherwise), ``data`` is parsed as it is.
    """
    if leaf_bodies:
        parsed = _parse_bodies_set_aside(data, leaf_bodies)
        if parsed is not None:
            return parsed
    return _parse_fed(data)


def _parse_fed(data: bytes | bytearray | memoryview) -> EmailMessage:
    parser = BytesFeedParser(FieldCachingMessage, policy=MIME_POLICY)
    with memoryview(data) as view:
        for start in range(0, len(view), _FEED_BYTES):
            parser.feed(view[start : start + _FEED_BYTES].tobytes())
    parsed = parser.close()
    assert isinstance(parsed, EmailMessage)
    return parsed


def _parse_bodies_set_aside(data: bytes | bytearray | memoryview,
                            leaf_bodies: Sequence[tuple[int, int]]) -> EmailMessage | None:
    # Unguessable per parse, so no message can carry a stand-in of its own; no line break
    # and no leading "--", so the parser can take it for nothing but a body line.
    tag = f"xgate-body-{secrets.token_hex(12)}-"
    with memoryview(data) as view:
        pieces: list[bytes | memoryview] = []
        at = 0
        for index, (start, end) in enumerate(leaf_bodies):
            if not at <= start <= end <= len(view):
                return None
            pieces += (view[at:start], f"{tag}{index}".encode("ascii"))
            at = end
        pieces.append(view[at:])
        parsed = _parse_fed(b"".join(pieces))
        del pieces
        leaves: dict[int, Message] = {}
        for part in parsed.walk():
            payload = part._payload  # type: ignore[attr-defined]
            if isinstance(payload, str) and payload.startswith(tag):
                number = payload[len(tag):]
                if not (number.isdecimal() and number.isascii()) or int(number) in leaves:
                    return None
                leaves[int(number)] = part
        if len(leaves) != len(leaf_bodies):
            return None
        for index, leaf in leaves.items():
            start, end = leaf_bodies[index]
            if (end - start >= UNREAD_BODY_BYTES and isinstance(data, bytes)
                    and isinstance(leaf, FieldCachingMessage)):
                leaf.leave_body_unread(data, start, end)
                continue
            # As the parser decodes what it is fed: bytes that are not ASCII as surrogates.
            leaf._payload = str(  # type: ignore[attr-defined]
                view[start:end], "ascii", "surrogateescape")
    return parsed


def parse_header_block(data: bytes) -> EmailMessage:
    """The top-level header fields of ``data`` alone, as ``parse_message`` would read them,
    without reading a line of the body (defects of the header block are found the same way:
    the parser stops at the same blank line)."""
    block = header_block_alone(data)
    headers = BytesHeaderParser(FieldCachingMessage, policy=MIME_POLICY).parsebytes(
        block + CRLF + CRLF)
    assert isinstance(headers, EmailMessage)
    return headers
