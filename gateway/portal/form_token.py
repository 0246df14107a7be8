"""The upload form's token: a double-submit cookie that is also signed and dated.

There is no session before a citizen submits, so CSRF cannot hang on one. The page sets a
cookie and puts the same value into a hidden field; a POST must bring both, equal (another
site can make the browser send the cookie, but cannot read it to fill the field). The value
is ``issued.nonce.mac`` with an HMAC under a key derived from the master key, which also
dates the form: one sent back sooner than ``min_fill_seconds`` after it was shown came from
a robot, one older than a day from a stale page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

from crypto.at_rest import MasterKey

COOKIE = "xgate_portal_form"
FIELD = "form_token"
MAX_AGE = timedelta(days=1)


class TokenProblem(StrEnum):
    MISSING = "missing"
    MISMATCH = "mismatch"
    FORGED = "forged"
    TOO_FAST = "too_fast"
    EXPIRED = "expired"


def _key(master: MasterKey) -> bytes:
    return hmac.new(master.key, b"xgate portal form token v1", hashlib.sha256).digest()


def _mac(master: MasterKey, payload: str) -> str:
    return hmac.new(_key(master), payload.encode(), hashlib.sha256).hexdigest()


def issue(master: MasterKey, now: datetime) -> str:
    payload = f"{int(now.timestamp())}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_mac(master, payload)}"


def check(master: MasterKey, cookie: str | None, field: str | None, now: datetime,
          min_fill: timedelta) -> TokenProblem | None:
    """None when the form may be taken; else what is wrong with it."""
    if not cookie or not field:
        return TokenProblem.MISSING
    if not hmac.compare_digest(cookie.encode(), field.encode()):
        return TokenProblem.MISMATCH
    payload, _, mac = field.rpartition(".")
    issued_text = payload.partition(".")[0]
    if not issued_text.isdigit() or not hmac.compare_digest(mac, _mac(master, payload)):
        return TokenProblem.FORGED
    age = now - datetime.fromtimestamp(int(issued_text), tz=now.tzinfo)
    if age < min_fill:
        return TokenProblem.TOO_FAST
    if age > MAX_AGE:
        return TokenProblem.EXPIRED
    return None
