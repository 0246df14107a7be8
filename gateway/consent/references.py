"""Case references (Aktenzeichen) that an outbound message names in its subject or text.

A caseworker who forgets the subject tag still writes the case reference somewhere ("Gutachten
zu L. M. (AZ 51.2-1234/2026)"). The consent stage looks for references of the office's form
(``consent.case_reference_pattern``) and asks the register which of them it knows; a message
naming a known case is a report of that case, tag or not.

The stage runs on every outbound message, so the work is bounded: the subject and the first
``consent.case_reference_scan_bytes`` of the text parts, decoded from their transfer
encoding only as far as that reaches, and at most ``MAX_CANDIDATES`` references, which the
register then looks up in one indexed query.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable, Iterator
from email.message import Message
from functools import lru_cache

from gateway.policy.consent import normalise_case

# More distinct references than this in one message is a list, not a report; the first ones
# are enough to recognise a report among them.
MAX_CANDIDATES = 50
# Base64 lines are at most 76 characters plus CRLF; reading this much more than the bytes
# wanted leaves room for the line breaks.
_BASE64_SLACK = 78 / 76


@lru_cache(maxsize=8)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _decoded(part: Message, data: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        # References are ASCII; any single-byte reading finds them.
        return data.decode("latin-1")


def _leading_text(part: Message, limit: int) -> str:
    """Up to about ``limit`` bytes of a leaf part's text, decoding no more than that."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return ""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        wanted = -(-limit // 3) * 4
        chunk = "".join(payload[:int(wanted * _BASE64_SLACK) + 4].split())[:wanted]
        try:
            data = base64.b64decode(chunk[:len(chunk) - len(chunk) % 4])
        except (binascii.Error, ValueError):
            return ""  # not base64 after all: the scanner judges such a part, not we
        return _decoded(part, data[:limit])
    if encoding == "quoted-printable":
        data = quopri.decodestring(payload[:limit * 3].encode("ascii", "replace"))
        return _decoded(part, data[:limit])
    # 7bit and 8bit: the parser has already read the text in the part's charset.
    return payload[:limit]


def leading_texts(message: Message, budget: int) -> Iterator[str]:
    """The text of each text/* part in order, about ``budget`` bytes in all."""
    left = budget
    for part in message.walk():
        if left <= 0:
            return
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        text = _leading_text(part, left)
        left -= max(len(text), 1)
        yield text


def case_references(texts: Iterable[str], pattern: str) -> list[str]:
    """The distinct case references in ``texts`` (normalised, in order of appearance)."""
    regex = compiled(pattern)
    group = "case" in regex.groupindex
    found: dict[str, None] = {}
    for text in texts:
        # findall runs in C; a letter repeats its reference many times, normalised once.
        values: Iterable[str | None] = (
            (m["case"] if group else m[0] for m in regex.finditer(text))
            if group or regex.groups else regex.findall(text))
        for value in dict.fromkeys(values):
            reference = normalise_case(value) if value else ""
            if reference:
                found[reference] = None
                if len(found) >= MAX_CANDIDATES:
                    return list(found)
    return list(found)
