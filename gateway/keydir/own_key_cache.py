"""The office's own private keys as loaded key objects, kept per worker process.

Loading an RSA private key with OpenSSL's full consistency check costs about 100 ms for
3072 bits, a hundred times the decryption it serves. Own keys were checked when they were
imported and are stored sealed (AES-GCM, bound to the key's row), so a key read back is the
key that was checked: it is loaded without repeating the check and kept for the next message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.keydir.own_keys import OwnKeyMaterial


class PrivateKeyCache:
    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[int, str], PrivateKeyTypes] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, key: OwnKeyMaterial) -> PrivateKeyTypes:
        """The private key object of an own S/MIME key (PKCS#8 DER)."""
        # The fingerprint is part of the cache key: a row id alone could be reused after a
        # deletion, and then the cache would answer with another key.
        ident = (key.id, key.fingerprint)
        with self._lock:
            found = self._keys.get(ident)
            if found is not None:
                self._keys.move_to_end(ident)
                return found
        loaded = serialization.load_der_private_key(
            key.private, password=None, unsafe_skip_rsa_key_validation=True)
        with self._lock:
            self._keys[ident] = loaded
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)
        return loaded


class OwnKeyLookup:
    """The own keys per address and kind, remembered for ``ttl`` seconds.

    Every encrypted message needs them, and the database round trip cost more than the
    RSA decryption. A key imported meanwhile is not missed: the decrypt stage asks again,
    with ``fresh=True``, before it concludes a message is not for any of our keys.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, list[OwnKeyMaterial]]] = {}
        self._lock = threading.Lock()

    def get(self, address: str, kind: str, now: float,
            load: Callable[[], list[OwnKeyMaterial]], *, fresh: bool = False
            ) -> list[OwnKeyMaterial]:
        ident = (address.lower(), kind)
        if not fresh:
            with self._lock:
                entry = self._entries.get(ident)
            if entry is not None and now - entry[0] < self.ttl:
                return entry[1]
        keys = load()
        with self._lock:
            self._entries[ident] = (now, keys)
        return keys
