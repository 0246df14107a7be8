"""The Received: trace header the edge puts on top of every message (RFC 5321 4.4)."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

# The client chooses its HELO name; only hostname-ish characters go into our header, so it
# cannot add comments, fake a second "by" clause or break the header's syntax.
_UNSAFE_HELO = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
MAX_HELO_CHARS = 100


def with_protocol(*, extended: bool, tls: bool, authenticated: bool) -> str:
    """The RFC 3848 ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA."""
    if not extended:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(*, helo: str, peer_ip: str, hostname: str, protocol: str,
                    now: datetime) -> bytes:
    helo_clean = _UNSAFE_HELO.sub("?", helo)[:MAX_HELO_CHARS] or "unknown"
    ip = _UNSAFE_HELO.sub("?", peer_ip) or "unknown"
    line = (f"Received: from {helo_clean} ([{ip}])\r\n"
            f"\tby {hostname} (xgate) with {protocol};\r\n"
            f"\t{format_datetime(now)}\r\n")
    return line.encode("ascii", errors="replace")
