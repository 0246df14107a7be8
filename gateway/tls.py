"""TLS for the listeners: the server context from the settings, and a self-signed demo cert.

Protocol and cipher choices follow BSI TR-02102-2: TLS 1.2 or newer, forward-secret ECDHE key
exchange with AEAD ciphers only (TLS 1.3's suites are all of that kind already).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import GatewayError
from gateway.settings import Settings

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
SELF_SIGNED_DAYS = 365


class TlsError(GatewayError):
    """The TLS certificate or key is missing, unsafe or unusable; the message names the file."""


def build_server_context(settings: Settings) -> ssl.SSLContext:
    cert = settings.resolve(settings.tls.cert_file)
    key = settings.resolve(settings.tls.key_file)
    for name, path in (("tls.cert_file", cert), ("tls.key_file", key)):
        # Each message names the key to fix, e.g. "tls.cert_file /x/cert.pem: no such file".
        if not path.exists():
            raise TlsError(f"{name} {path}: no such file")
        if not path.is_file():
            raise TlsError(f"{name} {path}: not a file")
        if not os.access(path, os.R_OK):
            raise TlsError(f"{name} {path}: not readable by this user")
    if key.stat().st_mode & stat.S_IROTH:
        raise TlsError(f"tls.key_file {key}: the TLS private key is readable by everyone; "
                       "chmod o-r it")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # Renegotiation is a DoS lever and TLS compression leaks (CRIME); the server picks the
    # cipher so a client cannot steer it to the weakest one both support.
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
                        | ssl.OP_CIPHER_SERVER_PREFERENCE)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"tls.cert_file {cert} with tls.key_file {key}: cannot load: {exc}"
                       ) from None
    return context


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Write a new ECDSA P-256 key (mode 0600) and a self-signed certificate for ``hostname``.

    Refuses to overwrite an existing key: a key someone deployed must not vanish because a
    demo command ran again.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
