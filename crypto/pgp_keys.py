"""OpenPGP key management: describe, generate, strip to the public part, judge strength.

Key *listing* (capabilities, expiry, revocation, sizes) comes from gpg (through python-gnupg),
because deciding which self-signature is in force is exactly what gpg's key listing is for and
pysequoia does not expose it. gpg only ever sees public parts here, in a throw-away home: secret
material stays in memory. Generation and the in-memory helpers use pysequoia.

BSI TR-02102-1 sets the floor: RSA (and DSA/ElGamal) keys of at least 3072 bits. New own keys
below it are refused (``check_minimum_strength``); partner keys below it may still be used to
*verify* signatures, but not to encrypt to (``encryption_strength_problem``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

import gnupg
import pysequoia
from pysequoia.packet import Packet, PacketPile, Tag

from crypto.openpgp import quiet_gnupg_logger
from crypto.pgp_backend import PgpError, PgpKeyError, PgpMalformed

MIN_RSA_BITS = 3072
KeyAlgorithm = Literal["rsa3072", "rsa4096", "cv25519"]
_SUITES = {
    "rsa3072": pysequoia.CipherSuite.RSA3k,
    "rsa4096": pysequoia.CipherSuite.RSA4k,
    "cv25519": pysequoia.CipherSuite.Cv25519,
}
# Algorithms whose strength is their modulus size (TR-02102-1: at least 3072 bits).
_FACTORING_ALGORITHMS = frozenset({"rsa", "dsa", "elgamal"})
_ALGORITHM_NAMES = {1: "rsa", 2: "rsa", 3: "rsa", 16: "elgamal", 17: "dsa", 18: "ecdh",
                    19: "ecdsa", 20: "elgamal", 22: "eddsa"}
# gpg validity letters that make a key unusable: expired, revoked, invalid, disabled.
_UNUSABLE = frozenset("erid")
_ARMOR_BLOCK = re.compile(
    rb"-----BEGIN PGP [A-Z ]+-----.*?-----END PGP [A-Z ]+-----", re.DOTALL)
_KEY_TAGS = (Tag.PublicKey, Tag.SecretKey)
# RFC 9580 section 5 packet tags, for cutting a certificate down (wkd_public_key).
_TAG_SIGNATURE, _TAG_PUBLIC_KEY, _TAG_TRUST, _TAG_USER_ID, _TAG_PUBLIC_SUBKEY = 2, 6, 12, 13, 14
_SECRET_TAGS = (Tag.SecretKey, Tag.SecretSubkey)


@dataclass(frozen=True)
class PgpSubkeyInfo:
    fingerprint: str
    algorithm: str  # "rsa", "cv25519", "ed25519", "nistp256", ...
    bits: int | None
    created: datetime
    expires: datetime | None
    can_encrypt: bool  # usable now: capability and neither expired nor revoked
    can_sign: bool
    usable: bool


@dataclass(frozen=True)
class PgpKeyInfo:
    """One certificate as gpg lists it. Fingerprints upper-case hex, times aware UTC.

    ``algorithm``/``bits`` describe the primary key; ``can_encrypt``/``can_sign`` the whole
    certificate (some usable key has the capability). Per-subkey facts are in ``subkeys``.
    """

    fingerprint: str
    user_ids: tuple[str, ...]
    emails: tuple[str, ...]  # from the user ids, lower-cased, without duplicates
    created: datetime
    expires: datetime | None
    algorithm: str
    bits: int | None
    can_encrypt: bool
    can_sign: bool
    has_secret: bool
    revoked: bool
    expired: bool
    subkeys: tuple[PgpSubkeyInfo, ...] = ()
    primary_can_encrypt: bool = False  # the primary key itself carries the "e" flag


def describe_keys(data: bytes, *, gpg_binary: str = "gpg") -> list[PgpKeyInfo]:
    """Describe every certificate in ``data`` (armored or binary, public or secret)."""
    certs = _split_certs(data)
    secret = _secret_fingerprints(data)
    public = b"".join(bytes(cert) for cert in certs)
    quiet_gnupg_logger()
    with tempfile.TemporaryDirectory(prefix="xgate-pgp-") as home:
        Path(home).chmod(0o700)
        try:
            gpg = gnupg.GPG(gpgbinary=gpg_binary, gnupghome=home, options=["--no-options"])
            scanned = gpg.scan_keys_mem(public)
        except (OSError, ValueError, RuntimeError) as exc:
            raise PgpError(f"cannot run gpg: {exc}") from None
    infos = [_key_info(entry, secret) for entry in scanned]
    if not infos:
        raise PgpMalformed("no OpenPGP key found")
    return infos


def generate_key(user_id: str, *, algorithm: KeyAlgorithm,
                 expires: datetime | None) -> bytes:
    """A new armored, unprotected transferable secret key, generated in memory.

    The caller encrypts it at rest; it is never written anywhere here. Sequoia back-dates a
    new key's creation time by about a minute, and the expiry counts from creation, so the
    key expires up to a minute before ``expires``.
    """
    if algorithm not in _SUITES:
        raise PgpKeyError(f"unsupported key algorithm {algorithm!r}")
    validity: int | None = None
    if expires is not None:
        if expires.tzinfo is None:
            raise ValueError("expires must be an aware datetime")
        validity = int((expires - datetime.now(UTC)).total_seconds())
        if validity <= 0:
            raise PgpKeyError("expiry date is in the past")
    try:
        tsk = pysequoia.Tsk.generate(
            user_id,
            # RFC 4880 (v4) keys: GnuPG 2.2 and most partners' clients cannot use v6 keys.
            profile=pysequoia.Profile.RFC4880,
            cipher_suite=_SUITES[algorithm],
            validity_seconds=validity,
        )
    except RuntimeError as exc:
        raise PgpKeyError(f"key generation failed: {_first_line(exc)}") from None
    armored = str(tsk).encode()
    for info in describe_keys(public_part(armored)):
        check_minimum_strength(info)
    return armored


def public_part(secret: bytes) -> bytes:
    """The armored public certificate of a transferable secret key (or of a public one)."""
    try:
        return str(pysequoia.Tsk.from_bytes(secret).extract_certificate()).encode()
    except RuntimeError:
        raise PgpMalformed("not an OpenPGP key") from None


def wkd_public_key(data: bytes, address: str) -> bytes:
    """The binary public certificate in ``data``, cut down to what a Web Key Directory
    publishes for ``address`` (draft-koch-openpgp-webkey-service, section 3.1, "minimal"):
    the primary key with its own signatures, only the user id(s) that carry ``address``,
    the subkeys with their bindings; no other user ids, no user attributes, no third-party
    certifications. Where no user id carries ``address``, the whole public certificate.
    Secret material never comes out: the certificate is split off as public first.
    """
    certs = _split_certs(data)
    if len(certs) != 1:
        raise PgpMalformed(f"expected one OpenPGP certificate, found {len(certs)}")
    public = bytes(certs[0])
    fingerprint = certs[0].fingerprint.upper()
    wanted = address.strip().lower()
    kept: list[bytes] = []
    keep_signatures = False
    matched = False
    for packet in PacketPile.from_bytes(public):
        tag = int(packet.tag)
        if tag in (_TAG_PUBLIC_KEY, _TAG_PUBLIC_SUBKEY):
            keep_signatures = True
        elif tag == _TAG_USER_ID:
            keep_signatures = wanted in _emails([packet.body.decode("utf-8", "replace")])
            matched = matched or keep_signatures
            if not keep_signatures:
                continue
        elif tag == _TAG_SIGNATURE:
            if not (keep_signatures and _issued_by(packet, fingerprint)):
                continue
        elif tag == _TAG_TRUST:  # local to a keyring, never published
            continue
        else:  # user attributes (photos) with their signatures
            keep_signatures = False
            continue
        kept.append(_new_format_packet(tag, packet.body))
    if not matched:
        return public
    minimal = b"".join(kept)
    if _split_certs(minimal)[0].fingerprint.upper() != fingerprint:
        raise PgpMalformed("the cut-down certificate does not read back")  # pragma: no cover
    return minimal


def _issued_by(signature: Packet, fingerprint: str) -> bool:
    """Whether the primary key made ``signature`` (a self-signature or binding)."""
    issuer = (signature.issuer_fingerprint or "").upper()
    if issuer:
        return issuer == fingerprint
    return (signature.issuer_key_id or "").upper() == fingerprint[-16:]


def _new_format_packet(tag: int, body: bytes) -> bytes:
    """RFC 9580 section 4.2.1: a new-format header with a definite length."""
    size = len(body)
    if size < 192:
        length = bytes([size])
    elif size < 8384:
        rest = size - 192
        length = bytes([(rest >> 8) + 192, rest & 0xFF])
    else:
        length = b"\xff" + size.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def check_minimum_strength(info: PgpKeyInfo) -> None:
    """Refuse a key for the gateway's *own* use if any of its keys is below TR-02102-1."""
    for fpr, algorithm, bits in _all_keys(info):
        if algorithm in _FACTORING_ALGORITHMS and (bits or 0) < MIN_RSA_BITS:
            raise PgpKeyError(
                f"{algorithm.upper()} key {fpr} has {bits} bits; BSI TR-02102-1 requires at "
                f"least {MIN_RSA_BITS} bits for new keys")


def encryption_strength_problem(info: PgpKeyInfo, *, now: datetime | None = None) -> str | None:
    """Why the gateway must not encrypt to this (partner) key, or None if it may.

    Weak keys are still good enough to check a partner's signatures; they only must not be
    trusted with new confidential content.
    """
    now = now or datetime.now(UTC)
    if info.revoked:
        return "key is revoked"
    if info.expired or (info.expires is not None and info.expires <= now):
        return "key has expired"
    candidates = [(k.fingerprint, k.algorithm, k.bits) for k in info.subkeys
                  if k.can_encrypt and k.usable]
    if info.primary_can_encrypt:
        candidates.append((info.fingerprint, info.algorithm, info.bits))
    if not candidates:
        return "key has no usable encryption (sub)key"
    for fpr, algorithm, bits in candidates:
        if algorithm in _FACTORING_ALGORITHMS and (bits or 0) < MIN_RSA_BITS:
            return (f"encryption key {fpr} is {algorithm.upper()} with {bits} bits; "
                    f"BSI TR-02102-1 requires at least {MIN_RSA_BITS}")
    return None


# --- In-memory helpers (pysequoia) -----------------------------------------------------------


def has_secret_material(data: bytes) -> bool:
    return bool(_secret_fingerprints(data))


def cert_fingerprint(data: bytes) -> str:
    """Primary fingerprint (upper-case) of the first certificate in ``data``."""
    return _split_certs(data)[0].fingerprint.upper()


def cert_emails(data: bytes) -> tuple[str, ...]:
    """E-mail addresses from the non-revoked user ids of the first certificate, lower-cased."""
    cert = _split_certs(data)[0]
    return _emails(str(uid) for uid in cert.user_ids)


def emails_for(fingerprint: str, certs: Sequence[bytes]) -> tuple[str, ...]:
    """E-mail addresses of the certificate with primary ``fingerprint`` among ``certs``."""
    wanted = fingerprint.upper()
    for data in certs:
        try:
            found = pysequoia.Cert.split_bytes(data)
        except RuntimeError:
            continue
        for cert in found:
            if cert.fingerprint.upper() == wanted:
                return _emails(str(uid) for uid in cert.user_ids)
    return ()


def key_packets(data: bytes) -> list[Packet]:
    """All packets of every armored block (or of the binary data) in ``data``."""
    blocks = _ARMOR_BLOCK.findall(data) or [data]
    packets: list[Packet] = []
    for block in blocks:
        try:
            packets.extend(PacketPile.from_bytes(block))
        except RuntimeError:
            raise PgpMalformed("not an OpenPGP key") from None
    return packets


def _split_certs(data: bytes) -> list[pysequoia.Cert]:
    # Cert.split_bytes yields public certificates only (secret parts are dropped), which is
    # what everything outside decryption and signing needs.
    try:
        certs = pysequoia.Cert.split_bytes(data)
    except RuntimeError:
        raise PgpMalformed("not an OpenPGP key") from None
    if not certs:
        raise PgpMalformed("no OpenPGP key found")
    return certs


def _secret_fingerprints(data: bytes) -> set[str]:
    primary: str | None = None
    secret: set[str] = set()
    for packet in key_packets(data):
        if packet.tag in _KEY_TAGS:
            primary = (packet.fingerprint or "").upper()
        if packet.tag in _SECRET_TAGS and primary:
            secret.add(primary)
    return secret


def _key_info(entry: dict[str, Any], secret: set[str]) -> PgpKeyInfo:
    fpr = str(entry["fingerprint"]).upper()
    cap = str(entry.get("cap") or "")
    validity = str(entry.get("trust") or "")
    user_ids = tuple(str(uid) for uid in entry.get("uids") or ())
    subkeys: list[PgpSubkeyInfo] = []
    fprs = {str(sub[0]): str(sub[2]).upper() for sub in entry.get("subkeys") or () if len(sub) > 2}
    for keyid, sub in (entry.get("subkey_info") or {}).items():
        sub_cap = str(sub.get("cap") or "")
        usable = not (set(str(sub.get("trust") or "")) & _UNUSABLE)
        subkeys.append(PgpSubkeyInfo(
            fingerprint=fprs.get(str(keyid), str(keyid)),
            algorithm=_algorithm(sub), bits=_int(sub.get("length")),
            created=_time(sub.get("date")) or _epoch(), expires=_time(sub.get("expires")),
            can_encrypt="e" in sub_cap and usable, can_sign="s" in sub_cap and usable,
            usable=usable,
        ))
    return PgpKeyInfo(
        fingerprint=fpr, user_ids=user_ids, emails=_emails(user_ids),
        created=_time(entry.get("date")) or _epoch(), expires=_time(entry.get("expires")),
        algorithm=_algorithm(entry), bits=_int(entry.get("length")),
        # Upper-case letters are the capabilities of the whole, usable certificate.
        can_encrypt="E" in cap, can_sign="S" in cap,
        has_secret=fpr in secret, revoked="r" in validity, expired="e" in validity,
        subkeys=tuple(subkeys), primary_can_encrypt="e" in cap,
    )


def _all_keys(info: PgpKeyInfo) -> list[tuple[str, str, int | None]]:
    return [(info.fingerprint, info.algorithm, info.bits)] + [
        (k.fingerprint, k.algorithm, k.bits) for k in info.subkeys]


def _algorithm(entry: dict[str, Any]) -> str:
    curve = str(entry.get("curve") or "")
    if curve:
        return curve.lower()
    algo = _int(entry.get("algo"))
    return _ALGORITHM_NAMES.get(algo or 0, f"algo{algo}")


def _emails(user_ids: Any) -> tuple[str, ...]:
    found: list[str] = []
    for uid in user_ids:
        address = parseaddr(str(uid))[1].strip().lower()
        if "@" in address and address not in found:
            found.append(address)
    return tuple(found)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> datetime | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _epoch() -> datetime:
    return datetime.fromtimestamp(0, UTC)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
