"""Demo keys for ``xgate init --demo``: the office's own S/MIME and OpenPGP keys.

A throwaway demo CA issues RSA-3072 S/MIME certificates (TR-02102's minimum for new keys);
its private key is discarded at once, so it can never issue anything else. The OpenPGP keys
are Curve25519. Everything private is sealed with the master key; nothing private is written
to a file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import import_own_smime, own_keys_for
from gateway.keydir.own_openpgp import generate_own_openpgp

VALIDITY = timedelta(days=365)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xgate demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def demo_ca(now: datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(65537, 3072)
    name = _name("xgate demo CA (not for production)")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def smime_identity(address: str, ca: x509.Certificate, ca_key: rsa.RSAPrivateKey,
                   now: datetime) -> bytes:
    """PEM of a new RSA-3072 key and its certificate for ``address``."""
    key = rsa.generate_private_key(65537, 3072)
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]),
                           critical=False)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))


def create_demo_keys(session: Session, master_key: MasterKey, addresses: list[str], *,
                     actor: str) -> tuple[bytes | None, list[str]]:
    """Own keys for each address that has none yet; the demo CA's PEM if one was made."""
    now = datetime.now(UTC)
    made: list[str] = []
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None
    for address in addresses:
        if not own_keys_for(session, master_key, address, KeyKind.SMIME):
            ca = ca or demo_ca(now)
            key = import_own_smime(session, master_key, address,
                                   smime_identity(address, *ca, now), actor=actor, now=now)
            made.append(f"S/MIME {address} {key.fingerprint}")
        if not own_keys_for(session, master_key, address, KeyKind.OPENPGP):
            key = generate_own_openpgp(session, master_key, address, actor=actor, now=now)
            made.append(f"OpenPGP {address} {key.fingerprint}")
    pem = ca[0].public_bytes(serialization.Encoding.PEM) if ca else None
    return pem, made
