"""The minima of BSI TR-02102-1 for the keys in the directory.

TR-02102-1 asks for RSA moduli of at least 3000 bits and elliptic curves of at least 250
bits, and no SHA-1 in signatures. Partners are not all there yet: RSA 2048 is still what many
authorities' PKIs issue, so a partner's 2048-bit key is accepted with a warning the admin
sees, and anything smaller is refused. The office's own new keys meet the minima fully: RSA
3072 (the next size up that software generates) and curves of at least 256 bits (P-256).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

PARTNER_MIN_RSA_BITS = 2048
RECOMMENDED_RSA_BITS = 3000
OWN_MIN_RSA_BITS = 3072
MIN_EC_BITS = 250
OWN_MIN_EC_BITS = 256
MIN_DSA_BITS = 3000
# Collision-broken: a certificate signed over these proves little about who holds the key.
_WEAK_SIGNATURE_HASHES = (hashes.MD5, hashes.SHA1)


@dataclass(frozen=True)
class Strength:
    algorithm: str  # e.g. "rsa3072", "ec-secp256r1", "ed25519"
    refusal: str | None = None  # why the key must not be stored
    warning: str | None = None  # stored, but an admin should know


def describe_public(key: CertificatePublicKeyTypes, *, own: bool) -> Strength:
    """Name ``key``'s algorithm and judge it for a partner key, or for an own key."""
    if isinstance(key, rsa.RSAPublicKey):
        return _rsa(key.key_size, own=own)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _ec(key.curve, own=own)
    if isinstance(key, ed25519.Ed25519PublicKey | x25519.X25519PublicKey):
        return Strength("ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "x25519")
    if isinstance(key, ed448.Ed448PublicKey | x448.X448PublicKey):
        return Strength("ed448" if isinstance(key, ed448.Ed448PublicKey) else "x448")
    if isinstance(key, dsa.DSAPublicKey):
        name = f"dsa{key.key_size}"
        if own:
            return Strength(name, refusal="DSA keys are not accepted for the office's own keys")
        if key.key_size < MIN_DSA_BITS:
            return Strength(name, refusal=f"DSA key of {key.key_size} bits is below "
                                          f"TR-02102's minimum of {MIN_DSA_BITS}")
        return Strength(name)
    return Strength(type(key).__name__.lstrip("_").lower(),
                    refusal=f"unsupported key type {type(key).__name__.lstrip('_')}")


def rsa_strength(bits: int, *, own: bool) -> Strength:
    return _rsa(bits, own=own)


def _rsa(bits: int, *, own: bool) -> Strength:
    name = f"rsa{bits}"
    if own and bits < OWN_MIN_RSA_BITS:
        return Strength(name, refusal=f"RSA key of {bits} bits: new keys of the office need at "
                                      f"least {OWN_MIN_RSA_BITS} bits (BSI TR-02102-1)")
    if bits < PARTNER_MIN_RSA_BITS:
        return Strength(name, refusal=f"RSA key of {bits} bits is below the minimum of "
                                      f"{PARTNER_MIN_RSA_BITS} bits")
    if bits < RECOMMENDED_RSA_BITS:
        return Strength(name, warning=f"RSA key of {bits} bits is below the {RECOMMENDED_RSA_BITS}"
                                      " bits BSI TR-02102-1 asks for; ask the partner for a "
                                      "stronger key at its next renewal")
    return Strength(name)


def _ec(curve: ec.EllipticCurve, *, own: bool) -> Strength:
    name = f"ec-{curve.name}"
    minimum = OWN_MIN_EC_BITS if own else MIN_EC_BITS
    if curve.key_size < minimum:
        return Strength(name, refusal=f"elliptic curve {curve.name} ({curve.key_size} bits) is "
                                      f"below the minimum of {minimum} bits")
    return Strength(name)


def certificate_signature_problem(cert: x509.Certificate) -> str | None:
    """Why the issuer's signature on ``cert`` is too weak to rely on, if it is."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "the certificate is signed with an unsupported algorithm"
    if isinstance(algorithm, _WEAK_SIGNATURE_HASHES):
        return (f"the certificate is signed with {algorithm.name.upper()}, which BSI TR-02102 "
                "no longer accepts for signatures")
    return None
