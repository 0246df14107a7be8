"""Certificate paths that validated, remembered for as long as the validation holds.

A partner's messages all come signed with the same certificate and chain, and validating the
chain (a signature check per link, every CRL's signature, the extensions) costs as much as
the message's own signature. An entry remembers a path that passed every check for one
signer, the certificates the message brought along, and the very trust anchor and CRL
objects it was checked against:

- it is only found with the same anchors and CRLs: the key holds their identities and the
  entry holds the objects themselves (so no other object can take over an identity while
  the entry lives). A trust store that reloads its files makes new objects, so a new CRL
  that revokes the signer or a changed anchor set never meets an old entry;
- it answers only for a reference time inside every checked certificate's validity; at
  other times the full validation runs and names the reason;
- it expires at the earliest notAfter of the checked certificates or nextUpdate of the CRLs;
- there are at most ``size`` entries, the least recently used go first.

Only successes are remembered: a failure is rare, and its reason must come from a full run.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

Path = tuple[x509.Certificate, ...]
_Key = tuple[x509.Certificate, tuple[x509.Certificate, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class _Entry:
    path: Path
    anchors: tuple[x509.Certificate, ...]  # kept alive: their ids are part of the key
    crls: tuple[x509.CertificateRevocationList, ...]
    valid_from: datetime.datetime  # the latest notBefore of the checked certificates
    valid_until: datetime.datetime  # the earliest notAfter of the checked certificates
    expires: datetime.datetime  # valid_until, or a CRL's nextUpdate if that comes first


class ChainCache:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(signer: x509.Certificate, pool: Sequence[x509.Certificate],
             anchors: Sequence[x509.Certificate],
             crls: Sequence[x509.CertificateRevocationList]) -> _Key:
        # Certificates hash and compare by their encoding; anchors and CRLs by identity
        # (a CRL cannot be hashed, and hashing a bundle of anchors per message would cost).
        return (signer, tuple(pool), tuple(map(id, anchors)), tuple(map(id, crls)))

    def get(self, signer: x509.Certificate, pool: Sequence[x509.Certificate],
            anchors: Sequence[x509.Certificate],
            crls: Sequence[x509.CertificateRevocationList],
            at: datetime.datetime, now: datetime.datetime) -> Path | None:
        """The remembered path, if one holds for these inputs at reference time ``at``."""
        key = self._key(signer, pool, anchors, crls)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry.expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        same = (len(entry.anchors) == len(anchors) and len(entry.crls) == len(crls)
                and all(a is b for a, b in zip(entry.anchors, anchors, strict=True))
                and all(a is b for a, b in zip(entry.crls, crls, strict=True)))
        if not same or not entry.valid_from <= at <= entry.valid_until:
            return None
        return entry.path

    def put(self, signer: x509.Certificate, pool: Sequence[x509.Certificate],
            anchors: Sequence[x509.Certificate],
            crls: Sequence[x509.CertificateRevocationList], path: Path,
            checked: Sequence[x509.Certificate]) -> None:
        """Remember ``path``, which passed every check; ``checked`` are the certificates
        whose validity was checked (the path without a trust anchor at its end)."""
        if not checked:
            return
        valid_from = max(c.not_valid_before_utc for c in checked)
        valid_until = min(c.not_valid_after_utc for c in checked)
        updates = [crl.next_update_utc for crl in crls if crl.next_update_utc is not None]
        expires = min([valid_until, *updates])
        entry = _Entry(path, tuple(anchors), tuple(crls), valid_from, valid_until, expires)
        key = self._key(signer, pool, anchors, crls)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
