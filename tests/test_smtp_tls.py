"""gateway.tls: the demo certificate and the listeners' server context."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.settings import Settings
from gateway.tls import TlsError, build_server_context, generate_self_signed


def _settings(cert: Path, key: Path) -> Settings:
    return Settings(tls={"cert_file": cert, "key_file": key})  # type: ignore[arg-type]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key, "xgate.jugendamt.example")
    return cert, key


def test_self_signed_certificate_and_private_key(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.public_key() == key.public_key()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["xgate.jugendamt.example"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ip_address_gets_an_ip_san(tmp_path: Path) -> None:
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "127.0.0.1")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_existing_key_is_never_overwritten(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    before = key.read_bytes()
    with pytest.raises(FileExistsError):
        generate_self_signed(cert, key, "other.example")
    assert key.read_bytes() == before


def test_server_context_is_tls12_or_newer(pair: tuple[Path, Path]) -> None:
    context = build_server_context(_settings(*pair))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode == ssl.CERT_NONE


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match=r"cert\.pem"):
        build_server_context(_settings(tmp_path / "cert.pem", tmp_path / "key.pem"))


def test_world_readable_key_is_refused(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    key.chmod(0o644)
    with pytest.raises(TlsError, match="readable by everyone"):
        build_server_context(_settings(cert, key))


def test_key_not_matching_the_certificate_is_refused(pair: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    generate_self_signed(other / "cert.pem", other / "key.pem", "other.example")
    with pytest.raises(TlsError, match="cannot load"):
        build_server_context(_settings(pair[0], other / "key.pem"))
