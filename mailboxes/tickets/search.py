"""The subject's blind index: whole words as keyed hashes, so the list can filter by a word
of a sealed subject in SQL without the database ever holding the word.

The key is derived from the master key for this one purpose. Equal words give equal tokens
(that is the point), so the index shows which tickets share a word, never which word.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from crypto.at_rest import MasterKey

TOKEN_BYTES = 16
MAX_WORDS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


def index_key(master: MasterKey) -> bytes:
    return hmac.new(master.key, b"xgate ticket subject index v1", hashlib.sha256).digest()


def words(text: str) -> list[str]:
    """Whole words, normalised (NFKC, case-folded), each once, in order."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    return list(dict.fromkeys(_WORD.findall(normal)))[:MAX_WORDS]


def tokens(key: bytes, text: str) -> list[bytes]:
    return [hmac.new(key, w.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
            for w in words(text)]
