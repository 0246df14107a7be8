"""Call-back numbers: what counts as a phone number, and its blind-index token.

A number is what people write down: digits with spaces, +, /, -, and brackets, at least
five digits. The token is a keyed hash of the digits alone (a leading + and 00 are the same
prefix), so "0221 / 123 45" and "022112345" find each other without the number in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from crypto.at_rest import MasterKey
from mailboxes.tickets.states import TicketError

MIN_DIGITS = 5
MAX_LENGTH = 40
_ALLOWED = re.compile(r"[0-9 +/()\-]+")
TOKEN_BYTES = 16


def parse_number(text: str) -> str:
    """The number as written (spaces collapsed), or a TicketError saying what is wrong."""
    number = " ".join(text.split())
    if not number:
        raise TicketError("a call-back number is needed", key="phone_missing")
    if len(number) > MAX_LENGTH:
        raise TicketError(f"a call-back number may have at most {MAX_LENGTH} characters",
                          key="phone_long", limit=MAX_LENGTH)
    if not _ALLOWED.fullmatch(number) or "+" in number[1:]:
        raise TicketError(f"{number!r} is not a phone number: use digits, spaces and + / - ( )",
                          key="phone_invalid", number=number)
    if sum(c.isdigit() for c in number) < MIN_DIGITS:
        raise TicketError(f"{number!r} is not a phone number: it needs at least {MIN_DIGITS} "
                          "digits", key="phone_short", number=number, digits=MIN_DIGITS)
    return number


def parse_optional_number(text: str) -> str:
    """A number given, checked as parse_number does; "" when none is (a caller who withholds
    it: a callback then has nobody to call, which the plausibility checks point out)."""
    return parse_number(text) if text.strip() else ""


def digits(number: str) -> str:
    found = "".join(c for c in number if c.isdigit())
    return found[2:] if number.lstrip().startswith("00") else found


def number_key(master: MasterKey) -> bytes:
    return hmac.new(master.key, b"xgate hotline number index v1", hashlib.sha256).digest()


def number_token(master: MasterKey, number: str) -> bytes:
    return hmac.new(number_key(master), digits(number).encode(),
                    hashlib.sha256).digest()[:TOKEN_BYTES]
