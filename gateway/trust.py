"""The trust anchors and CRLs S/MIME signatures are checked against, reloaded on change.

An admin replaces the CA bundle or drops in a fresh CRL without restarting the workers: the
files are re-read whenever their modification time changes. The store also keeps the chain
validations that passed against its anchors and CRLs (crypto.chain_cache); they are dropped
when the files are re-read, and could not be found with the new objects anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from crypto.chain_cache import ChainCache
from crypto.errors import CryptoError
from gateway.settings import Settings


class TrustError(CryptoError):
    """A configured trust anchor or CRL file cannot be read."""


def load_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise TrustError(f"{source}: not a PEM or DER certificate: {exc}") from None


def load_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise TrustError(f"{source}: not a PEM or DER CRL: {exc}") from None


class TrustStore:
    def __init__(self, anchors_file: Path | None, crl_files: Sequence[Path]) -> None:
        self.anchors_file = anchors_file
        self.crl_files = list(crl_files)
        self._lock = threading.Lock()
        self._stamp: tuple[float, ...] | None = None
        self._anchors: list[x509.Certificate] = []
        self._crls: list[x509.CertificateRevocationList] = []
        self.chain_cache = ChainCache()

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustStore:
        anchors = settings.crypto.trust_anchors_file
        return cls(settings.resolve(anchors) if anchors else None,
                   [settings.resolve(p) for p in settings.crypto.crl_files])

    def current(self) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
        """Anchors and CRLs as the files are now. Raises TrustError if one is unreadable."""
        files = ([self.anchors_file] if self.anchors_file else []) + self.crl_files
        try:
            stamp = tuple(f.stat().st_mtime_ns for f in files)
        except OSError as exc:
            raise TrustError(f"cannot read {exc.filename}: {exc.strerror}") from None
        with self._lock:
            if stamp != self._stamp:
                anchors = (load_certificates(self.anchors_file.read_bytes(),
                                             str(self.anchors_file))
                           if self.anchors_file else [])
                crls = [load_crl(f.read_bytes(), str(f)) for f in self.crl_files]
                self._anchors, self._crls, self._stamp = anchors, crls, stamp
                self.chain_cache.clear()
            return list(self._anchors), list(self._crls)
