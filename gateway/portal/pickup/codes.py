"""Link tokens and pickup codes: how they are made and how they are stored.

The code is eight characters from an alphabet without look-alikes (no 0/O, 1/I/L), so it
can be read out on the phone or typed from a letter; case, spaces and dashes do not count.
Eight of 31 symbols is about 40 bits, and an item locks after a few wrong tries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from crypto.at_rest import MasterKey

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(b"xgate pickup token v1\0" + token.encode()).digest()


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise(code: str) -> str:
    return "".join(c for c in code.upper() if c not in " -\t")


def _code_key(master: MasterKey) -> bytes:
    return hmac.new(master.key, b"xgate pickup code v1", hashlib.sha256).digest()


def code_hash(master: MasterKey, item_id: int, code: str) -> bytes:
    """Bound to the item, so one item's hash says nothing about another's code."""
    return hmac.new(_code_key(master), f"{item_id}:{normalise(code)}".encode(),
                    hashlib.sha256).digest()


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
