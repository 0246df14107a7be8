"""Decryption keys read from unprotected transferable secret keys, for ``crypto.pgp_session``.

Only what the in-process decryption of gpg's usual output needs: v4 RSA and v4 ECDH-on-
Curve25519 secret (sub)keys whose secret part is stored unprotected (S2K usage 0), as the
gateway's key directory hands them in. Anything else (protected keys, v5/v6 keys, other
algorithms) is simply not offered here; ``crypto.pgp_sequoia`` then leaves such messages to
pysequoia's own decryption, so nothing that worked before is lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.pgp_backend import PgpError
from crypto.pgp_packets import (
    TAG_PUBLIC_KEY,
    TAG_SECRET_KEY,
    TAG_SECRET_SUBKEY,
    PacketFormatError,
    key_blocks,
    mpi_int,
    read_mpi,
    read_packets,
)

ALGO_RSA = (1, 2)  # RSA (encrypt or sign), RSA encrypt-only
ALGO_ECDH = 18
# 1.3.6.1.4.1.3029.1.5.1, DER-encoded without tag and length, as OpenPGP stores curve OIDs.
OID_CV25519 = bytes.fromhex("2b060104019755010501")

# How many MPIs form each algorithm's public part in a v4 key packet (after any curve OID),
# needed to find where the public part ends: the fingerprint is computed over it.
_PUBLIC_MPIS = {1: 2, 2: 2, 3: 2, 16: 3, 17: 4, 20: 3, 18: 1, 19: 1, 22: 1}
_HAS_OID = frozenset({18, 19, 22})


@dataclass(frozen=True, slots=True)
class DecryptionKey:
    """One secret (sub)key that can recover session keys."""

    key_id: bytes  # low 64 bits of the fingerprint
    fingerprint: bytes  # v4 fingerprint of this (sub)key, 20 bytes
    primary_fingerprint: str  # of the certificate it belongs to, upper-case hex
    algorithm: int
    rsa_key: rsa.RSAPrivateKey | None = None
    x25519_key: x25519.X25519PrivateKey | None = None
    kdf_hash: int = 0  # ECDH: KDF parameters of the key packet (RFC 6637 9)
    kek_algorithm: int = 0


def decryption_keys(data: bytes) -> list[DecryptionKey]:
    """The usable decryption keys in one or more transferable secret keys; [] if none.

    Never raises for odd input: a key this module cannot use is skipped, and the caller
    falls back to pysequoia, which has its own (stricter) opinion about the key.
    """
    try:
        blocks = key_blocks(data)
    except (ValueError, PgpError):
        return []
    found: list[DecryptionKey] = []
    for block in blocks:
        try:
            packets = read_packets(block)
        except PacketFormatError:
            continue
        primary: str | None = None
        for packet in packets:
            if packet.tag in (TAG_SECRET_KEY, TAG_PUBLIC_KEY):
                primary = None
                public = _public_part(packet.body)
                if public is not None:
                    primary = _fingerprint(public).hex().upper()
            if packet.tag in (TAG_SECRET_KEY, TAG_SECRET_SUBKEY) and primary is not None:
                key = _decryption_key(packet.body, primary)
                if key is not None:
                    found.append(key)
    return found


def _fingerprint(public_body: bytes) -> bytes:
    """v4 fingerprint (RFC 4880 12.2): SHA-1 over 0x99, two-octet length, public key body."""
    return hashlib.sha1(  # noqa: S324 -- the v4 fingerprint is defined as SHA-1
        b"\x99" + len(public_body).to_bytes(2, "big") + public_body).digest()


def _public_part(body: bytes) -> bytes | None:
    """The public key packet body inside a v4 (secret) key packet, or None if not v4/known."""
    try:
        if body[0] != 4:
            return None
        algorithm = body[5]
        if algorithm not in _PUBLIC_MPIS:
            return None
        pos = 6
        if algorithm in _HAS_OID:
            pos += 1 + body[pos]
        for _ in range(_PUBLIC_MPIS[algorithm]):
            _, pos = read_mpi(body, pos)
        if algorithm == ALGO_ECDH:
            pos += 1 + body[pos]  # KDF parameters: length, then reserved, hash, cipher
        if pos > len(body):
            return None
    except (IndexError, PacketFormatError):
        return None
    return body[:pos]


def _decryption_key(body: bytes, primary: str) -> DecryptionKey | None:
    public = _public_part(body)
    if public is None:
        return None
    algorithm = body[5]
    if algorithm not in (*ALGO_RSA, ALGO_ECDH):
        return None
    pos = len(public)
    try:
        if body[pos] != 0:
            return None  # S2K usage != 0: passphrase-protected; not how the gateway keeps keys
        secret_start = pos + 1
        fingerprint = _fingerprint(public)
        if algorithm in ALGO_RSA:
            key = _rsa_key(public, body, secret_start)
            if key is None:
                return None
            return DecryptionKey(fingerprint[-8:], fingerprint, primary, algorithm, rsa_key=key)
        return _cv25519_key(public, body, secret_start, fingerprint, primary)
    except (IndexError, ValueError):
        return None


def _checksum_ok(body: bytes, start: int, end: int) -> bool:
    """The two-octet sum of the secret MPIs that follows them (S2K usage 0)."""
    stored = body[end : end + 2]
    return len(stored) == 2 and sum(body[start:end]) % 65536 == int.from_bytes(stored, "big")


def _rsa_key(public: bytes, body: bytes, pos: int) -> rsa.RSAPrivateKey | None:
    n, at = mpi_int(public, 6)
    e, _ = mpi_int(public, at)
    start = pos
    d, pos = mpi_int(body, pos)
    p, pos = mpi_int(body, pos)
    q, pos = mpi_int(body, pos)
    _, pos = read_mpi(body, pos)  # u = p^-1 mod q; cryptography wants q^-1 mod p instead
    if not _checksum_ok(body, start, pos) or p * q != n or min(p, q) < 3:
        return None
    # The consistency that matters for decryption, checked cheaply: d inverts e modulo
    # p-1 and q-1, and the CRT values are derived here rather than taken from the packet.
    if (d * e) % (p - 1) != 1 or (d * e) % (q - 1) != 1:
        return None
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q), public_numbers=rsa.RSAPublicNumbers(e, n))
    # OpenSSL's full key check (primality tests of p and q) costs about 100 ms per RSA-3072
    # key, more than the whole decryption; these are the gateway's own keys, bound to their
    # fingerprint through n, and a bogus one can only make decryption fail.
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _cv25519_key(public: bytes, body: bytes, pos: int, fingerprint: bytes,
                 primary: str) -> DecryptionKey | None:
    oid_end = 7 + public[6]
    if public[7:oid_end] != OID_CV25519:
        return None  # ECDH on a NIST or Brainpool curve: left to pysequoia
    point, at = read_mpi(public, oid_end)
    kdf = public[at : at + 1 + public[at]]
    if len(point) != 33 or point[0] != 0x40 or len(kdf) != 4 or kdf[1] != 1:
        return None
    start = pos
    scalar, pos = read_mpi(body, pos)
    if not _checksum_ok(body, start, pos) or len(scalar) > 32:
        return None
    # OpenPGP stores the Curve25519 scalar as a big-endian MPI, i.e. the reverse of the
    # native (RFC 7748, little-endian) byte string; leading zeros were stripped by the MPI.
    native = scalar.rjust(32, b"\0")[::-1]
    key = x25519.X25519PrivateKey.from_private_bytes(native)
    # The public point must follow from the scalar: this proves the byte order is right
    # and guards against a mismatched or damaged key.
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != point[1:]:
        return None
    return DecryptionKey(fingerprint[-8:], fingerprint, primary, ALGO_ECDH, x25519_key=key,
                         kdf_hash=kdf[2], kek_algorithm=kdf[3])
