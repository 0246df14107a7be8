"""Throwaway certificates for TLS tests, made at test time (nothing secret in the repo).

A test CA issues a server certificate for 127.0.0.1 and localhost and one for another name;
a second, unrelated CA stands for "a CA the relay does not trust".
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What a CA certificate may do: sign certificates and CRLs, nothing else.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False)

@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class despite the name

    ca_file: Path
    # Issued by ca_file for 127.0.0.1 and localhost.
    server: CertPair
    # Issued by ca_file, but for a name the relay does not connect to.
    wrong_name: CertPair
    # A CA that issued none of the above.
    other_ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2))


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
    )
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
           names: list[x509.GeneralName], directory: Path, stem: str) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name(stem))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return pair


def make_pki(directory: Path) -> TestPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca("xgate test CA")
    other_ca, _ = _make_ca("xgate unrelated CA")
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_ca_file = directory / "other-ca.crt"
    other_ca_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    server = _issue(ca, ca_key, [x509.DNSName("localhost"),
                                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                    directory, "server")
    wrong = _issue(ca, ca_key, [x509.DNSName("mail.elsewhere.example")], directory,
                   "wrong-name")
    return TestPki(ca_file=ca_file, server=server, wrong_name=wrong,
                   other_ca_file=other_ca_file)


@dataclass(frozen=True)
class NamedPki:
    """One fresh CA and server certificates it issued for arbitrary DNS names."""

    ca_file: Path
    # Keyed by the stem the caller chose; each certificate names exactly the given hosts.
    certs: dict[str, CertPair]


def make_named_pki(directory: Path, names_by_stem: dict[str, list[str]]) -> NamedPki:
    """A new CA (ca.crt in ``directory``) and, per stem, a certificate for those DNS names.

    For clients that connect to a real host name (WKD's openpgpkey.<domain>) and must check
    the certificate against that name; make_pki's certificates only name loopback.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca("xgate named-host test CA")
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs = {
        stem: _issue(ca, ca_key, [x509.DNSName(name) for name in names], directory, stem)
        for stem, names in names_by_stem.items()
    }
    return NamedPki(ca_file=ca_file, certs=certs)
