"""A throwaway S/MIME PKI made at test time: CAs, people's certificates, CRLs.

Every certificate has its key and PEM files beside it, so the same party can be handed to the
gateway (as DER and PKCS#8) and to openssl (as files) playing the other side.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pki import CA_KEY_USAGE

DAY = datetime.timedelta(days=1)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Party:
    cert: x509.Certificate
    key: PrivateKeyTypes
    cert_pem: Path
    key_pem: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pkcs8(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def write_party(directory: Path, name: str, cert: x509.Certificate,
                key: PrivateKeyTypes) -> Party:
    """``cert`` and ``key`` as ``name``.pem and ``name``.key (PKCS#8, readable by us only)."""
    cert_pem = directory / f"{name}.pem"
    key_pem = directory / f"{name}.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return Party(cert, key, cert_pem, key_pem)


def make_ca(directory: Path, name: str, *, bits: int = 3072) -> Party:
    key = rsa.generate_private_key(65537, bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Test CA")])
    start = now()
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start - 30 * DAY).not_valid_after(start + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    return write_party(directory, name, cert, key)


def make_person(directory: Path, name: str, email: str, ca: Party, *,
                key: PrivateKeyTypes | None = None, bits: int = 3072,
                not_before: datetime.datetime | None = None,
                not_after: datetime.datetime | None = None) -> Party:
    """A certificate for ``email`` that may sign and receive encrypted mail."""
    key = key if key is not None else rsa.generate_private_key(65537, bits)
    public = key.public_key()
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    start = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                 x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)]))
        .issuer_name(ca.cert.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or start - DAY)
        .not_valid_after(not_after or start + 200 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True,
            key_encipherment=isinstance(public, rsa.RSAPublicKey), data_encipherment=False,
            key_agreement=isinstance(public, ec.EllipticCurvePublicKey), key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256()))
    return write_party(directory, name, cert, key)


def make_crl(directory: Path, ca: Party, revoked: list[Party]) -> Path:
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    start = now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(start - DAY).next_update(start + 7 * DAY))
    for party in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(party.cert.serial_number)
            .revocation_date(start - DAY).build())
    path = directory / f"{ca.cert_pem.stem}.crl.pem"
    path.write_bytes(builder.sign(ca.key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM))
    return path
