"""Envelope address syntax, stricter than aiosmtpd's parser.

aiosmtpd accepts anything RFC 5322's addr-spec grammar allows (quoted local parts, address
literals, domains without dots). Everything after the edge (mailbox lookup, routing, the relay,
DSNs) is simpler and safer if envelope addresses are plain ``dot-atom@host.name``.
"""

from __future__ import annotations

import re

# RFC 5322 atext, dot-separated; no quoted strings.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 1035 labels, at least two of them (no address literals, no bare hostnames).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")

# RFC 5321 4.5.3.1: local part 64 octets, domain 255, path 256 including the angle brackets.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_ADDRESS = 254

# aiosmtpd hands the null reverse-path over as this string.
NULL_SENDER = "<>"


def is_valid_address(address: str) -> bool:
    if len(address) > MAX_ADDRESS or not address.isascii():
        return False
    local, at, domain = address.rpartition("@")
    if not at or len(local) > MAX_LOCAL or len(domain) > MAX_DOMAIN:
        return False
    return _LOCAL.fullmatch(local) is not None and _DOMAIN.fullmatch(domain) is not None
