"""Outbound S/MIME against the real openssl CLI as the receiving side.

openssl decrypts and verifies what we produce, so these tests check interoperability, not
just our own round trip; our own decryptor (crypto.smime) is checked as a second receiver.
Keys and certificates are generated at test time; nothing is checked in.
"""

from __future__ import annotations

import datetime
import email.message
import email.parser
import email.policy
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from crypto.smime import SmimeError, decrypt_smime_message
from crypto.smime_out import (
    SigningError,
    UnsupportedRecipientKey,
    canonicalize,
    encrypt_mime,
    sign_mime,
)
from tests.support.pki import CA_KEY_USAGE

ENTITY = (
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hilfeplan f=C3=BCr Fall 2026-17\r\n"
    b"second line, trailing spaces are kept   \r\n"
)


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: x509.Certificate
    ca_pem: Path
    intermediate: x509.Certificate
    signer_cert: x509.Certificate
    signer_key: rsa.RSAPrivateKey
    recipient_cert: x509.Certificate
    recipient_key: rsa.RSAPrivateKey
    recipient_cert_pem: Path
    recipient_key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    public: CertificatePublicKeyTypes,
    issuer: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool,
    email_address: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]),
            critical=False,
        )
    if email_address is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email_address)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("smime_out")
    # Root CA -> intermediate CA -> signer: the signer is only verifiable if the chain
    # we put into the signature is really there (ca.pem holds the root only).
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert("xgate test root", ca_key.public_key(), None, ca_key, ca=True)
    int_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _cert("xgate test sub", int_key.public_key(), ca_cert, ca_key, ca=True)
    signer_key = rsa.generate_private_key(65537, 3072)
    signer_cert = _cert(
        "gateway@xgate.test",
        signer_key.public_key(),
        intermediate,
        int_key,
        ca=False,
        email_address="gateway@xgate.test",
    )
    recipient_key = rsa.generate_private_key(65537, 3072)
    recipient_cert = _cert(
        "office@example.test",
        recipient_key.public_key(),
        ca_cert,
        ca_key,
        ca=False,
        email_address="office@example.test",
    )
    key_pem = directory / "recipient.key"
    key_pem.write_bytes(
        recipient_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(
        directory=directory,
        ca_cert=ca_cert,
        ca_pem=_pem(directory / "ca.pem", ca_cert),
        intermediate=intermediate,
        signer_cert=signer_cert,
        signer_key=signer_key,
        recipient_cert=recipient_cert,
        recipient_key=recipient_key,
        recipient_cert_pem=_pem(directory / "recipient.pem", recipient_cert),
        recipient_key_pem=key_pem,
    )


def _run_openssl(pki: Pki, name: str, message: bytes,
                 *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `openssl cms` on ``message`` (S/MIME input); its output goes to NAME.out."""
    source = pki.directory / f"{name}.eml"
    source.write_bytes(message)
    return subprocess.run(
        ["openssl", "cms", *args, "-in", str(source), "-out", str(pki.directory / f"{name}.out")],
        capture_output=True,
        check=False,
    )


def _openssl(pki: Pki, name: str, message: bytes, *args: str) -> bytes:
    """Run `openssl cms` on ``message``, require success, and return what it writes out."""
    result = _run_openssl(pki, name, message, *args)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return (pki.directory / f"{name}.out").read_bytes()


def _openssl_decrypt(pki: Pki, name: str, message: bytes) -> bytes:
    return _openssl(
        pki,
        name,
        message,
        "-decrypt",
        "-recip",
        str(pki.recipient_cert_pem),
        "-inkey",
        str(pki.recipient_key_pem),
    )


# -purpose any: the test root is not an S/MIME CA by extended key usage; chain building and
# the signature itself are still fully checked.
def _verify_args(pki: Pki) -> tuple[str, ...]:
    return ("-verify", "-CAfile", str(pki.ca_pem), "-purpose", "any")


def _openssl_verify(pki: Pki, name: str, message: bytes) -> bytes:
    return _openssl(pki, name, message, *_verify_args(pki))


def _openssl_verify_fails(pki: Pki, name: str, message: bytes) -> bool:
    return _run_openssl(pki, name, message, *_verify_args(pki)).returncode != 0


def _cms_of(message: bytes) -> cms.ContentInfo:
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(message)
    if parsed.is_multipart():
        parts = parsed.get_payload()
        assert isinstance(parts, list)
        signature_part = parts[1]
        assert isinstance(signature_part, email.message.Message)
        body = signature_part.get_payload(decode=True)
    else:
        body = parsed.get_payload(decode=True)
    assert isinstance(body, bytes)
    return cms.ContentInfo.load(body)


@pytest.mark.parametrize("gcm", [True, False], ids=["aes256-gcm", "aes256-cbc"])
def test_openssl_decrypts_to_exact_entity(pki: Pki, gcm: bool) -> None:
    message = encrypt_mime(ENTITY, [pki.recipient_cert], gcm=gcm)
    assert _openssl_decrypt(pki, f"enc-{gcm}", message) == ENTITY

    header = message.split(b"\r\n\r\n", 1)[0]
    expected_type = b"authEnveloped-data" if gcm else b"enveloped-data"
    assert b"application/pkcs7-mime; smime-type=" + expected_type in header
    info = _cms_of(message)
    assert info["content_type"].native == (
        "authenticated_enveloped_data" if gcm else "enveloped_data"
    )
    envelope = info["content"]
    content_info = envelope["auth_encrypted_content_info" if gcm else "encrypted_content_info"]
    assert content_info["content_encryption_algorithm"]["algorithm"].native == (
        "aes256_gcm" if gcm else "aes256_cbc"
    )
    (recipient_info,) = envelope["recipient_infos"]
    ktri = recipient_info.chosen
    assert recipient_info.name == "ktri"
    assert ktri["rid"].name == "issuer_and_serial_number"
    transport = ktri["key_encryption_algorithm"]
    assert transport["algorithm"].native == "rsaes_oaep"
    assert transport["parameters"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert transport["parameters"]["mask_gen_algorithm"]["parameters"]["algorithm"].native == (
        "sha256"
    )


@pytest.mark.parametrize("gcm", [True, False], ids=["aes256-gcm", "aes256-cbc"])
def test_own_decryptor_accepts_output(pki: Pki, gcm: bool) -> None:
    message = encrypt_mime(ENTITY, [pki.recipient_cert], gcm=gcm)
    result = decrypt_smime_message(message, [(pki.recipient_cert, pki.recipient_key)])
    assert result.plaintext == ENTITY
    assert result.content_algorithm == ("aes256-gcm" if gcm else "aes256-cbc")
    assert result.key_transport == "rsaes-oaep"


def test_several_recipients_each_decrypt(pki: Pki) -> None:
    other_key = rsa.generate_private_key(65537, 3072)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("other root", ca_key.public_key(), None, ca_key, ca=True)
    other = _cert("other@example.test", other_key.public_key(), ca, ca_key, ca=False)
    message = encrypt_mime(ENTITY, [pki.recipient_cert, other], gcm=True)
    assert _openssl_decrypt(pki, "multi", message) == ENTITY
    assert decrypt_smime_message(message, [(other, other_key)]).plaintext == ENTITY


def test_openssl_verifies_signature_and_returns_exact_content(pki: Pki) -> None:
    signed = sign_mime(ENTITY, pki.signer_cert, pki.signer_key, chain=[pki.intermediate])
    assert _openssl_verify(pki, "signed", signed) == ENTITY

    header = signed.split(b"\r\n\r\n", 1)[0]
    assert b'protocol="application/pkcs7-signature"' in header
    assert b"micalg=sha-256" in header
    signed_data = _cms_of(signed)["content"]
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    certs = {c.chosen.dump() for c in signed_data["certificates"]}
    assert pki.signer_cert.public_bytes(serialization.Encoding.DER) in certs
    assert pki.intermediate.public_bytes(serialization.Encoding.DER) in certs
    (signer_info,) = signed_data["signer_infos"]
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha256"
    attrs = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
    signing_time = attrs["signing_time"]
    assert abs(datetime.datetime.now(datetime.UTC) - signing_time) < datetime.timedelta(minutes=5)


def test_signature_without_chain_fails_against_root(pki: Pki) -> None:
    # Shows the chain really matters: without the intermediate openssl cannot build a path.
    signed = sign_mime(ENTITY, pki.signer_cert, pki.signer_key)
    assert _openssl_verify_fails(pki, "nochain", signed)


def test_tampered_signed_content_fails_verification(pki: Pki) -> None:
    signed = sign_mime(ENTITY, pki.signer_cert, pki.signer_key, chain=[pki.intermediate])
    tampered = signed.replace(b"2026-17", b"2026-18", 1)
    assert tampered != signed
    assert _openssl_verify_fails(pki, "tampered", tampered)


def test_bare_lf_entity_is_signed_in_canonical_form(pki: Pki) -> None:
    lf_entity = ENTITY.replace(b"\r\n", b"\n")
    signed = sign_mime(lf_entity, pki.signer_cert, pki.signer_key, chain=[pki.intermediate])
    assert _openssl_verify(pki, "lf", signed) == ENTITY


@pytest.mark.parametrize("gcm", [True, False], ids=["aes256-gcm", "aes256-cbc"])
def test_sign_then_encrypt(pki: Pki, gcm: bool) -> None:
    signed = sign_mime(ENTITY, pki.signer_cert, pki.signer_key, chain=[pki.intermediate])
    message = encrypt_mime(signed, [pki.recipient_cert], gcm=gcm)

    decrypted = _openssl_decrypt(pki, f"se-{gcm}", message)
    assert decrypted == signed
    assert _openssl_verify(pki, f"se-verify-{gcm}", decrypted) == ENTITY

    ours = decrypt_smime_message(message, [(pki.recipient_cert, pki.recipient_key)])
    assert ours.plaintext == signed


def test_ec_recipient_is_refused(pki: Pki) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_cert = _cert("ec@example.test", ec_key.public_key(), None, ec_key, ca=False)
    with pytest.raises(UnsupportedRecipientKey, match="only RSA") as info:
        encrypt_mime(ENTITY, [pki.recipient_cert, ec_cert], gcm=True)
    assert isinstance(info.value, SmimeError)


def test_small_rsa_recipient_is_refused(pki: Pki) -> None:
    small_key = rsa.generate_private_key(65537, 1024)
    small = _cert("small@example.test", small_key.public_key(), None, small_key, ca=False)
    with pytest.raises(UnsupportedRecipientKey, match="1024 bits"):
        encrypt_mime(ENTITY, [small], gcm=False)


def test_recipient_without_key_encipherment_is_refused(pki: Pki) -> None:
    # A CA certificate: RSA and big enough, but its KeyUsage allows only certificate signing.
    key = rsa.generate_private_key(65537, 2048)
    cert = _cert("ca-like", key.public_key(), None, key, ca=True)
    with pytest.raises(UnsupportedRecipientKey, match="key encipherment"):
        encrypt_mime(ENTITY, [cert], gcm=True)


def test_no_recipients_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encrypt_mime(ENTITY, [], gcm=True)


def test_signer_key_must_match_certificate(pki: Pki) -> None:
    with pytest.raises(SigningError, match="does not belong"):
        sign_mime(ENTITY, pki.signer_cert, pki.recipient_key)


def test_canonicalize_line_endings() -> None:
    assert canonicalize(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd"
