"""Public-key decryption of SEIPD v1 messages with ``cryptography`` primitives, in-process.

Why this exists: pysequoia 0.1.35 decrypts gpg's default output (PKESK v3, SEIPD v1 holding
a *compressed* packet that holds one-pass signature, literal data and signature) but cannot
verify the signature inside it, so the in-process backend had to spawn gpg for the most
common message there is. Here we open the encryption ourselves and hand the signed message
inside to ``pysequoia.verify``, which handles that structure.

Scope, deliberately narrow: PKESK v3 for RSA (RFC 4880 5.1) or ECDH on Curve25519
(RFC 6637), SEIPD v1 (RFC 4880 5.13) with AES. ``open_message`` returns None for anything
else, and the caller leaves such messages to pysequoia as before.

Security rules followed here (the gateway is a decryption service for anyone who can send
mail, i.e. a potential oracle):

* Every failure to recover a session key (bad RSA padding, bad checksum, unknown algorithm
  byte, AES key unwrap failure) looks the same: "no session key from this PKESK". With
  OpenSSL's implicit rejection, bad PKCS#1 padding does not even raise; the random result
  then fails the checksum or the MDC.
* The quick-check bytes of the random prefix are ignored: the whole packet is decrypted and
  only the MDC (compared in constant time) decides. Nothing of the plaintext is looked at
  before the MDC has matched.
* A failed MDC after a session key was recovered is final (``SessionError``): the caller
  answers with the one uniform "decryption failed".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.asymmetric import padding, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from crypto.pgp_packets import (
    TAG_COMPRESSED,
    TAG_MARKER,
    TAG_PKESK,
    TAG_SEIPD,
    TAG_SKESK,
    PacketFormatError,
    inflate,
    read_mpi,
    read_packets,
)
from crypto.pgp_secret_keys import ALGO_ECDH, ALGO_RSA, OID_CV25519, DecryptionKey

# RFC 4880 9.2: key sizes of the symmetric algorithms a session key may name. Only AES is
# decrypted here; the others are known so that a well-formed session key for them is
# recognised (and the message left to pysequoia) rather than mistaken for a failure.
_KEY_SIZES = {1: 16, 2: 24, 3: 16, 4: 16, 7: 16, 8: 24, 9: 32, 10: 32, 11: 16, 12: 24, 13: 32}
_AES = frozenset({7, 8, 9})
_AES_BLOCK = 16
# RFC 4880 9.4 hash ids allowed as the ECDH KDF hash (RFC 6637 9: SHA2 only).
_KDF_HASHES = {8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_WILDCARD = bytes(8)
_MDC_HEADER = b"\xd3\x14"  # new-format tag 19, length 20
_MDC_SIZE = 22
_MAX_COMPRESSION_DEPTH = 3


class SessionError(Exception):
    """A session key was recovered but the encrypted data failed (MDC, framing): final."""


@dataclass(frozen=True)
class Opened:
    """An integrity-checked, decompressed message body: the packets inside the SEIPD."""

    packets: bytes
    cipher_algorithm: int
    key: DecryptionKey  # the (sub)key whose PKESK gave the session key


def open_message(binary: bytes, keys: Sequence[DecryptionKey],
                 max_output: int) -> Opened | None:
    """Decrypt ``binary`` (a PKESK v3 + SEIPD v1 message) with one of ``keys``.

    Returns None when this module does not handle the message or recovers no session key
    from it (the caller tries pysequoia then); raises ``SessionError`` when a recovered session
    key does not decrypt it intact, and ``PgpTooLarge`` above ``max_output``.
    """
    try:
        packets = [p for p in read_packets(binary) if p.tag != TAG_MARKER]
    except PacketFormatError:
        return None
    if not packets or packets[-1].tag != TAG_SEIPD or packets[-1].body[:1] != b"\x01":
        return None  # SEIPD v2, AEAD, no encrypted data, or trailing packets: not ours
    if any(p.tag not in (TAG_PKESK, TAG_SKESK) for p in packets[:-1]):
        return None  # e.g. a second encrypted data packet
    encrypted = packets[-1].body
    tried: list[tuple[int, bytes]] = []
    other_cipher = False
    for pkesk in (p for p in packets if p.tag == TAG_PKESK):
        body = pkesk.body
        if len(body) < 10 or body[0] != 3:
            continue  # v6 PKESKs (RFC 9580) are left to pysequoia
        key_id, algorithm = body[1:9], body[9]
        for key in keys:
            if key_id not in (key.key_id, _WILDCARD) or _family(key.algorithm) != _family(
                    algorithm):
                continue
            session = _session_key(body, key)
            if session is None or session in tried:
                continue
            if session[0] not in _AES:
                other_cipher = True  # e.g. CAST5 or Camellia: pysequoia's policy decides
                continue
            tried.append(session)
            plaintext = _decrypt_seipd(encrypted, session[0], session[1])
            if plaintext is not None:
                return Opened(_unwrap_compression(plaintext, max_output), session[0], key)
    if tried and not other_cipher:
        raise SessionError("integrity check failed")
    return None


def _family(algorithm: int) -> int:
    return 1 if algorithm in ALGO_RSA else algorithm


def _session_key(pkesk: bytes, key: DecryptionKey) -> tuple[int, bytes] | None:
    """(symmetric algorithm, session key) from one PKESK v3 body, or None; all failures alike."""
    message: bytes | None
    try:
        if key.rsa_key is not None:
            message = _rsa_message(pkesk, key)
        elif key.x25519_key is not None:
            message = _ecdh_message(pkesk, key)
        else:
            return None
    except (ValueError, IndexError, InvalidUnwrap, PacketFormatError):
        return None
    if message is None:
        return None
    return _split_session_key(message)


def _rsa_message(pkesk: bytes, key: DecryptionKey) -> bytes:
    assert key.rsa_key is not None
    value, _ = read_mpi(pkesk, 10)
    size = (key.rsa_key.key_size + 7) // 8
    if len(value) > size:
        raise ValueError("RSA value longer than the modulus")
    # An MPI drops leading zero octets; RSAES-PKCS1-v1_5 wants exactly the modulus length.
    return key.rsa_key.decrypt(value.rjust(size, b"\0"), padding.PKCS1v15())


def _ecdh_message(pkesk: bytes, key: DecryptionKey) -> bytes | None:
    """RFC 6637 8 with Curve25519 as RFC 7748 / draft-ietf-openpgp-rfc4880bis define it."""
    assert key.x25519_key is not None
    point, pos = read_mpi(pkesk, 10)
    size = pkesk[pos]
    wrapped = pkesk[pos + 1 : pos + 1 + size]
    if len(point) != 33 or point[0] != 0x40 or len(wrapped) != size or pos + 1 + size != len(
            pkesk):
        return None
    hash_name = _KDF_HASHES.get(key.kdf_hash)
    kek_size = _KEY_SIZES.get(key.kek_algorithm) if key.kek_algorithm in _AES else None
    if hash_name is None or kek_size is None:
        return None
    shared = key.x25519_key.exchange(x25519.X25519PublicKey.from_public_bytes(point[1:]))
    # RFC 6637 8: Param = curve OID (length-prefixed) || algorithm id || KDF parameters
    # || "Anonymous Sender    " || the recipient (sub)key's fingerprint.
    param = (bytes([len(OID_CV25519)]) + OID_CV25519
             + bytes([ALGO_ECDH, 3, 1, key.kdf_hash, key.kek_algorithm])
             + b"Anonymous Sender    " + key.fingerprint)
    kek = hashlib.new(hash_name, b"\x00\x00\x00\x01" + shared + param).digest()[:kek_size]
    padded = aes_key_unwrap(kek, wrapped)
    # PKCS#5 padding to a multiple of 8 octets (RFC 6637 8).
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= 8 or padded[-pad:] != bytes([pad]) * pad:
        return None
    return padded[:-pad]


def _split_session_key(message: bytes) -> tuple[int, bytes] | None:
    """sym algorithm octet || key || two-octet checksum (sum of key octets mod 65536)."""
    if len(message) < 4:
        return None
    algorithm, key, checksum = message[0], message[1:-2], message[-2:]
    size_ok = _KEY_SIZES.get(algorithm) == len(key)
    sum_ok = hmac.compare_digest((sum(key) % 65536).to_bytes(2, "big"), checksum)
    if not (size_ok and sum_ok):
        return None
    return algorithm, key


def _decrypt_seipd(body: bytes, algorithm: int, key: bytes) -> bytes | None:
    """The packets inside a SEIPD v1 body, or None unless its MDC matches.

    RFC 4880 5.13: CFB with a zero IV over the whole body (the OpenPGP CFB resync of SED does
    not apply); the plaintext is a random prefix of block size + 2 octets, the packets, then
    the MDC packet (D3 14 + SHA-1 over prefix, packets and D3 14).
    """
    if algorithm not in _AES or len(key) != _KEY_SIZES[algorithm]:
        return None
    ciphertext = memoryview(body)[1:]
    if len(ciphertext) < _AES_BLOCK + 2 + _MDC_SIZE:
        return None
    decryptor = Cipher(algorithms.AES(key), CFB(bytes(_AES_BLOCK))).decryptor()
    plaintext = decryptor.update(ciphertext) + decryptor.finalize()
    digest = hashlib.sha1(memoryview(plaintext)[:-20]).digest()  # noqa: S324 -- the MDC is SHA-1
    if not hmac.compare_digest(plaintext[-_MDC_SIZE:], _MDC_HEADER + digest):
        return None
    return plaintext[_AES_BLOCK + 2 : -_MDC_SIZE]


def _unwrap_compression(packets: bytes, max_output: int) -> bytes:
    """The packet stream with a top-level compressed packet replaced by its content.

    Nested compression (a compressed packet holding only a compressed packet) is unwrapped
    too, a few levels deep, each level bounded. Only called on integrity-checked data: a
    framing error here is the sender's (who held the session key), and is final.
    """
    for depth in range(_MAX_COMPRESSION_DEPTH + 1):
        if not packets or packets[0] & 0x80 == 0:
            raise SessionError("no packets inside the encrypted data")
        ctb = packets[0]
        if (ctb & 0x3F if ctb & 0x40 else (ctb >> 2) & 0x0F) != TAG_COMPRESSED:
            return packets
        if depth == _MAX_COMPRESSION_DEPTH:
            break
        try:
            inner = read_packets(packets)
        except PacketFormatError:
            raise SessionError("bad packet framing inside the encrypted data") from None
        if len(inner) != 1:
            raise SessionError("data after the compressed packet")
        try:
            packets = inflate(inner[0].body, max_output)
        except PacketFormatError:
            raise SessionError("bad compressed data") from None
    raise SessionError("compression nested too deeply")
