"""Reading partner certificates (gateway.keydir.material), and the certificate helpers the
other key directory tests use. Certificates are made here at test time."""

from __future__ import annotations

import datetime
import subprocess
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.keydir.errors import KeyDirError
from gateway.keydir.material import parse_partner_material
from gateway.keydir.models import KeyKind

DAY = datetime.timedelta(days=1)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@cache
def rsa_key(bits: int = 3072, label: str = "a") -> rsa.RSAPrivateKey:
    """Keys are slow to make; tests share them by (size, label)."""
    return rsa.generate_private_key(65537, bits)


@cache
def ec_key(curve: str = "secp256r1", label: str = "a") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1() if curve == "secp256r1" else ec.SECP224R1())


@cache
def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Partner Test CA")])
    start = utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start - 400 * DAY).not_valid_after(start + 4000 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))
    return cert, key


def ca_cert() -> x509.Certificate:
    return _ca()[0]


def make_cert(*emails: str, key: PrivateKeyTypes | None = None,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None, encrypt: bool = True,
              sign: bool = True, name: str = "Partner") -> x509.Certificate:
    """An end-entity certificate for ``emails`` issued by the test CA (RSA 3072 by default)."""
    key = key if key is not None else rsa_key()
    ca, ca_key = _ca()
    issuer_key: CertificateIssuerPrivateKeyTypes = ca_key
    start = utcnow()
    public = key.public_key()
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or start - DAY)
        .not_valid_after(not_after or start + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=encrypt,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False))
    if emails:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def key_pem(key: PrivateKeyTypes, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


# --- tests ----------------------------------------------------------------------------------


def test_pem_certificate_is_read_with_its_facts() -> None:
    cert = make_cert("Beratung@Stelle.example", "info@stelle.example")

    [parsed] = parse_partner_material(pem(cert))

    assert parsed.kind is KeyKind.SMIME
    assert parsed.fingerprint == fingerprint(cert)
    assert parsed.data == der(cert)
    assert parsed.addresses == ("beratung@stelle.example", "info@stelle.example")
    assert parsed.algorithm == "rsa3072"
    assert parsed.can_encrypt and parsed.warning is None
    assert parsed.not_after == cert.not_valid_after_utc
    assert parsed.subject == "CN=Partner"


def test_der_certificate_is_read() -> None:
    cert = make_cert("a@b.example")
    [parsed] = parse_partner_material(der(cert))
    assert parsed.fingerprint == fingerprint(cert)


def test_several_pem_certificates_and_the_ca_is_left_out() -> None:
    first = make_cert("a@b.example", key=rsa_key(3072, "a"))
    second = make_cert("c@b.example", key=rsa_key(3072, "b"))

    parsed = parse_partner_material(pem(first, ca_cert(), second))

    assert [p.fingerprint for p in parsed] == [fingerprint(first), fingerprint(second)]


def test_pkcs7_bundle_is_read() -> None:
    cert = make_cert("a@b.example")
    bundle = pkcs7.serialize_certificates([cert, ca_cert()], serialization.Encoding.PEM)
    assert [p.fingerprint for p in parse_partner_material(bundle)] == [fingerprint(cert)]
    bundle_der = pkcs7.serialize_certificates([cert], serialization.Encoding.DER)
    assert [p.fingerprint for p in parse_partner_material(bundle_der)] == [fingerprint(cert)]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"hello, this is not a key\n", "not a certificate or OpenPGP public key"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "not a readable certificate"),
    (b"\x30\x03\x02\x01\x01", "not a readable certificate"),
    (b"x" * (1024 * 1024 + 1), "a key or certificate file has at most"),
])
def test_garbage_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(KeyDirError, match=message):
        parse_partner_material(data)


def test_a_private_key_in_the_file_is_refused() -> None:
    cert = make_cert("a@b.example")
    with pytest.raises(KeyDirError, match="contains a private key"):
        parse_partner_material(pem(cert) + key_pem(rsa_key()))


def test_only_ca_certificates_are_refused() -> None:
    with pytest.raises(KeyDirError, match="only CA certificates"):
        parse_partner_material(pem(ca_cert()))


def test_certificate_without_address_is_refused() -> None:
    with pytest.raises(KeyDirError, match="names no e-mail address"):
        parse_partner_material(pem(make_cert()))


def test_rsa_below_2048_is_refused() -> None:
    weak = make_cert("a@b.example", key=rsa_key(1024))
    with pytest.raises(KeyDirError, match="RSA key of 1024 bits is below the minimum of 2048"):
        parse_partner_material(pem(weak))


def test_rsa_2048_is_accepted_with_a_warning() -> None:
    [parsed] = parse_partner_material(pem(make_cert("a@b.example", key=rsa_key(2048))))
    assert parsed.algorithm == "rsa2048"
    assert parsed.warning is not None and "TR-02102" in parsed.warning
    assert parsed.can_encrypt


def test_small_curve_is_refused_and_ec_cannot_encrypt() -> None:
    with pytest.raises(KeyDirError, match="secp224r1"):
        parse_partner_material(pem(make_cert("a@b.example", key=ec_key("secp224r1"))))
    [parsed] = parse_partner_material(pem(make_cert("a@b.example", key=ec_key())))
    # Outbound S/MIME transports keys to RSA only; an EC certificate still proves signatures.
    assert parsed.algorithm == "ec-secp256r1" and not parsed.can_encrypt


def test_sha1_signed_certificate_is_refused(tmp_path: Path) -> None:
    # cryptography no longer signs with SHA-1; openssl still does, as old partner CAs did.
    subprocess.run(
        ["openssl", "req", "-x509", "-sha1", "-newkey", "rsa:3072", "-nodes",
         "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=x",
         "-addext", "subjectAltName=email:a@b.example",
         "-addext", "basicConstraints=critical,CA:FALSE", "-days", "10"],
        check=True, capture_output=True)
    with pytest.raises(KeyDirError, match="signed with SHA1"):
        parse_partner_material((tmp_path / "c.pem").read_bytes())


def test_signing_only_certificate_cannot_encrypt() -> None:
    [parsed] = parse_partner_material(pem(make_cert("a@b.example", encrypt=False)))
    assert not parsed.can_encrypt
