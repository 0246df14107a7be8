"""Reading what an admin or a message hands us: certificates and OpenPGP public keys.

Everything is checked before anything is stored: a file with one bad key is refused whole,
so an import never half-happens.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from crypto.errors import CryptoError
from gateway.keydir.errors import KeyDirError
from gateway.keydir.models import KeyKind
from gateway.keydir.strength import (
    PARTNER_MIN_RSA_BITS,
    certificate_signature_problem,
    describe_public,
    rsa_strength,
)

if TYPE_CHECKING:
    from crypto.pgp_keys import PgpKeyInfo

# A key or a certificate with its chain is a few kilobytes; a megabyte is a wrong file.
MAX_INPUT_BYTES = 1024 * 1024

_PGP_PUBLIC = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_PGP_SECRET = b"-----BEGIN PGP PRIVATE KEY BLOCK-----"
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_PKCS7 = b"-----BEGIN PKCS7-----"
_PEM_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# OpenPGP packet tags (RFC 9580 section 5): 5 secret key, 6 public key.
_SECRET_KEY_TAG = 5
_PUBLIC_KEY_TAG = 6


@dataclass(frozen=True)
class ParsedKey:
    """One certificate or OpenPGP public key, checked and described, not yet stored."""

    kind: KeyKind
    fingerprint: str
    data: bytes  # DER certificate, or the armored OpenPGP public key
    subject: str
    issuer: str | None
    algorithm: str
    addresses: tuple[str, ...]
    not_before: datetime
    not_after: datetime | None
    can_encrypt: bool
    warning: str | None


def parse_partner_material(data: bytes) -> list[ParsedKey]:
    """Every key in ``data``: PEM (one or several) or DER certificates, a PKCS#7 bundle, or
    OpenPGP public keys (armored or binary). Raises KeyDirError naming the problem."""
    if not data.strip():
        raise KeyDirError("the file is empty")
    if len(data) > MAX_INPUT_BYTES:
        raise KeyDirError(f"the file has {len(data)} bytes; a key or certificate file has at "
                          f"most {MAX_INPUT_BYTES}")
    if _PGP_SECRET in data or _PEM_PRIVATE.search(data) or _binary_pgp_tag(data) == \
            _SECRET_KEY_TAG:
        # Whoever holds a partner's private key is the partner: it must never reach us, and
        # a file that has one is a mistake to point out, not to work around.
        raise KeyDirError("the file contains a private key; import only the partner's public "
                          "certificate or public key")
    if _PGP_PUBLIC in data or _binary_pgp_tag(data) == _PUBLIC_KEY_TAG:
        return _openpgp(data)
    return [_certificate(cert) for cert in _end_entity(_certificates(data))]


def _binary_pgp_tag(data: bytes) -> int | None:
    """The tag of the first packet if ``data`` looks like binary OpenPGP, else None."""
    if not data or not data[0] & 0x80:
        return None
    first = data[0]
    if first & 0x40:  # new packet format
        return first & 0x3F
    return (first >> 2) & 0x0F


# --- certificates ---------------------------------------------------------------------------


def _certificates(data: bytes) -> list[x509.Certificate]:
    try:
        if _PEM_CERT in data:
            return x509.load_pem_x509_certificates(data)
        if _PEM_PKCS7 in data:
            return pkcs7.load_pem_pkcs7_certificates(data)
        if data[:1] == b"\x30":  # an ASN.1 SEQUENCE: DER
            try:
                return [x509.load_der_x509_certificate(data)]
            except ValueError:
                return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError as exc:
        raise KeyDirError(f"not a readable certificate: {_first_line(exc)}") from None
    raise KeyDirError("not a certificate or OpenPGP public key (expected a PEM or DER "
                      "certificate, a PKCS#7 bundle, or an OpenPGP public key)")


def _end_entity(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    # A partner's export often carries its CA chain. CAs are trust anchors, configured in
    # crypto.trust_anchors_file, not keys to encrypt to: they are left out. A self-signed
    # certificate that names an e-mail address and issued nothing else in the file is the
    # partner's own key, whatever its basicConstraints say: `openssl req -x509`, which small
    # services use to make one, marks it CA:TRUE by default. It can only be pinned
    # (keys.pinned_certificates), never become a trust anchor.
    leaves = [c for c in certs if not _is_ca(c) or _self_signed_leaf(c, certs)]
    if not leaves:
        raise KeyDirError("the file holds only CA certificates; trust anchors belong in "
                          "crypto.trust_anchors_file, partner keys are end-entity certificates "
                          "(or a self-signed certificate that names the partner's address)")
    return leaves


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names itself as issuer and its own key made the signature."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed_der(data: bytes) -> bool:
    """``is_self_signed`` for a stored DER certificate; False for anything unreadable."""
    try:
        return is_self_signed(x509.load_der_x509_certificate(data))
    except ValueError:
        return False


def _self_signed_leaf(cert: x509.Certificate, certs: list[x509.Certificate]) -> bool:
    return (bool(certificate_emails(cert)) and is_self_signed(cert)
            and not any(other is not cert and other.issuer == cert.subject for other in certs))


def certificate_emails(cert: x509.Certificate) -> tuple[str, ...]:
    """The rfc822Name entries of the subjectAltName, lower-cased (what RFC 8550 binds)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return _unique(e.strip().lower() for e in san.get_values_for_type(x509.RFC822Name))


def certificate_fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _certificate(cert: x509.Certificate) -> ParsedKey:
    subject = cert.subject.rfc4514_string()
    problem = certificate_signature_problem(cert)
    if problem:
        raise KeyDirError(f"certificate {subject}: {problem}")
    strength = describe_public(cert.public_key(), own=False)
    if strength.refusal:
        raise KeyDirError(f"certificate {subject}: {strength.refusal}")
    addresses = certificate_emails(cert)
    if not addresses:
        raise KeyDirError(f"certificate {subject} names no e-mail address (subjectAltName "
                          "rfc822Name), so no recipient could ever be matched to it")
    return ParsedKey(
        kind=KeyKind.SMIME, fingerprint=certificate_fingerprint(cert),
        data=cert.public_bytes(serialization.Encoding.DER), subject=subject,
        issuer=cert.issuer.rfc4514_string(), algorithm=strength.algorithm,
        addresses=addresses, not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc, can_encrypt=certificate_can_encrypt(cert),
        warning=strength.warning)


def certificate_can_encrypt(cert: x509.Certificate) -> bool:
    """Whether outbound S/MIME (crypto.smime_out: RSA key transport) can encrypt to it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < PARTNER_MIN_RSA_BITS:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_encipherment:
            return False
    except x509.ExtensionNotFound:
        pass  # no KeyUsage: every use is allowed (RFC 5280 section 4.2.1.3)
    return _eku_allows(cert, ExtendedKeyUsageOID.EMAIL_PROTECTION)


def certificate_can_sign(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return False
    except x509.ExtensionNotFound:
        pass
    return _eku_allows(cert, ExtendedKeyUsageOID.EMAIL_PROTECTION)


def _eku_allows(cert: x509.Certificate, purpose: x509.ObjectIdentifier) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return purpose in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku


# --- OpenPGP --------------------------------------------------------------------------------


def _openpgp(data: bytes) -> list[ParsedKey]:
    # Imported here: it loads the OpenPGP library, which certificate-only work never needs.
    from crypto import pgp_keys

    try:
        infos = pgp_keys.describe_keys(data)
        # Stored armored and public only, whatever came in (WKD answers in binary).
        public = pgp_keys.public_part(data) if len(infos) == 1 else b""
    except CryptoError as exc:
        raise KeyDirError(f"not a readable OpenPGP key: {_first_line(exc)}") from None
    if len(infos) > 1:
        # The directory stores each key's own bytes; cutting a keyring apart is for gpg.
        raise KeyDirError(f"the file holds {len(infos)} OpenPGP keys; import one key per file")
    return [_pgp_key(infos[0], public)]


def pgp_algorithm(info: PgpKeyInfo) -> str:
    """"rsa3072", "ed25519", "cv25519" ...: the primary key's algorithm, with the size where
    the size is what the strength depends on."""
    if info.algorithm in ("rsa", "dsa", "elgamal") and info.bits:
        return f"{info.algorithm}{info.bits}"
    return info.algorithm


def _pgp_key(info: PgpKeyInfo, public: bytes) -> ParsedKey:
    from crypto import pgp_keys

    fingerprint = info.fingerprint.upper()
    if info.has_secret:
        raise KeyDirError("the file contains a private key; import only the partner's public "
                          "certificate or public key")
    if info.revoked:
        raise KeyDirError(f"OpenPGP key {fingerprint} is revoked by its owner")
    warnings = []
    for algorithm, bits in [(info.algorithm, info.bits),
                            *((k.algorithm, k.bits) for k in info.subkeys)]:
        if algorithm in ("rsa", "dsa", "elgamal"):
            strength = rsa_strength(bits or 0, own=False)
            if strength.refusal:
                raise KeyDirError(f"OpenPGP key {fingerprint}: {strength.refusal}")
            if strength.warning and strength.warning not in warnings:
                warnings.append(strength.warning)
    # crypto.pgp_keys is the authority on what may be encrypted to (TR-02102-1: no RSA
    # encryption key below 3072 bits). A key it rules out still proves signatures.
    problem = pgp_keys.encryption_strength_problem(info)
    if problem and info.can_encrypt:
        warnings.append(f"not used to encrypt: {problem}")
    addresses = _unique(e.strip().lower() for e in info.emails)
    if not addresses:
        raise KeyDirError(f"OpenPGP key {fingerprint} has no user id with an e-mail address, "
                          "so no recipient could ever be matched to it")
    return ParsedKey(
        kind=KeyKind.OPENPGP, fingerprint=fingerprint, data=public,
        subject="\n".join(info.user_ids), issuer=None, algorithm=pgp_algorithm(info),
        addresses=addresses, not_before=info.created, not_after=_usable_until(info),
        can_encrypt=info.can_encrypt and problem is None,
        warning="; ".join(warnings) or None)


def _usable_until(info: PgpKeyInfo) -> datetime | None:
    """When the key stops being usable: the primary key's expiry, or earlier when every
    encryption subkey expires before it (then nothing can be encrypted to it any more)."""
    ends = [info.expires]
    encrypting = [k for k in info.subkeys if k.can_encrypt]
    if encrypting and not info.primary_can_encrypt and all(k.expires for k in encrypting):
        ends.append(max(k.expires for k in encrypting if k.expires))
    known = [e for e in ends if e is not None]
    return min(known) if known else None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
