"""S/MIME signature verification against messages signed by the real openssl CLI.

The signer is always openssl (`cms -sign` and the older `smime -sign`), so these tests check
interoperability, not just our own round trip. Keys, certificates and the CRL are generated
at test time with cryptography; nothing is checked in.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.message
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.errors import CryptoError
from crypto.smime import SmimeError
from crypto.smime_verify import MalformedMessage, VerifyResult, verify_smime
from tests.support.pki import CA_KEY_USAGE

MESSAGE = b"Content-Type: text/plain\r\n\r\nquarterly numbers: 42, 17, 99\r\n"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Party:
    cert: x509.Certificate
    key: Key
    cert_pem: Path
    key_pem: Path

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Party
    other_ca: Party  # not a trust anchor
    alice: Party  # good RSA signer
    ec_signer: Party
    expired: Party
    future: Party  # not yet valid
    stranger: Party  # issued by other_ca
    revoked: Party
    no_eku: Party  # EKU serverAuth only
    crl: x509.CertificateRevocationList
    message: Path


def _write(directory: Path, name: str, cert: x509.Certificate, key: Key) -> Party:
    cert_pem = directory / f"{name}.pem"
    key_pem = directory / f"{name}.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Party(cert, key, cert_pem, key_pem)


def _make_ca(
    directory: Path, name: str, issuer: Party | None = None, *, is_ca: bool = True
) -> Party:
    key = rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Test CA")])
    # Self-signed root unless an issuer is given (then an intermediate below it).
    signing_key = key if issuer is None else issuer.key
    assert isinstance(signing_key, rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 30 * DAY)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca and issuer else None),
            critical=True,
        )
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return _write(directory, name, cert, key)


def _make_signer(
    directory: Path,
    name: str,
    ca: Party,
    *,
    key: Key | None = None,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
    eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION,
) -> Party:
    key = key if key is not None else rsa.generate_private_key(65537, 2048)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(f"{name}@example.test")]),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _write(directory, name, cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("smime-verify")
    ca = _make_ca(directory, "ca")
    other_ca = _make_ca(directory, "other")
    revoked = _make_signer(directory, "revoked", ca)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(NOW - DAY)
        .next_update(NOW + 7 * DAY)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked.cert.serial_number)
            .revocation_date(NOW - DAY)
            .build()
        )
        .sign(ca.key, hashes.SHA256())
    )
    message = directory / "msg.txt"
    message.write_bytes(MESSAGE)
    return Pki(
        directory=directory,
        ca=ca,
        other_ca=other_ca,
        alice=_make_signer(directory, "alice", ca),
        ec_signer=_make_signer(
            directory, "ecsigner", ca, key=ec.generate_private_key(ec.SECP256R1())
        ),
        expired=_make_signer(
            directory, "expired", ca, not_before=NOW - 30 * DAY, not_after=NOW - DAY
        ),
        future=_make_signer(
            directory, "future", ca, not_before=NOW + DAY, not_after=NOW + 30 * DAY
        ),
        stranger=_make_signer(directory, "stranger", other_ca),
        revoked=revoked,
        no_eku=_make_signer(directory, "server", ca, eku=ExtendedKeyUsageOID.SERVER_AUTH),
        crl=crl,
        message=message,
    )


def _sign(
    pki: Pki, signer: Party, *extra: str, command: str = "cms", ca: Party | None = None
) -> bytes:
    out = pki.directory / f"signed-{os.urandom(6).hex()}.eml"
    issuer = ca if ca is not None else pki.ca
    subprocess.run(
        [
            "openssl",
            command,
            "-sign",
            "-in",
            str(pki.message),
            "-out",
            str(out),
            "-outform",
            "SMIME",
            "-signer",
            str(signer.cert_pem),
            "-inkey",
            str(signer.key_pem),
            "-certfile",
            str(issuer.cert_pem),
            *extra,
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def _verify(
    pki: Pki,
    raw: bytes,
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: datetime.datetime | None = None,
) -> VerifyResult:
    return verify_smime(raw, [pki.ca.cert], crls=crls, now=now)


def _opaque(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )


def _opaque_der(pki: Pki, signer: Party) -> bytes:
    out = pki.directory / f"signed-{os.urandom(6).hex()}.der"
    subprocess.run(
        [
            *("openssl", "cms", "-sign", "-nodetach", "-in", str(pki.message), "-out", str(out)),
            *("-outform", "DER", "-signer", str(signer.cert_pem), "-inkey", str(signer.key_pem)),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def _assert_valid(result: VerifyResult, signer: Party) -> None:
    assert result.valid, result.reason
    assert result.reason == ""
    assert result.signer_fingerprint == signer.fingerprint
    assert result.signer_subject == signer.cert.subject.rfc4514_string()
    assert result.signer_emails == (signer.cert.subject.rfc4514_string()[3:] + "@example.test",)
    assert result.digest_algorithm == "sha256"
    assert result.signing_time is not None
    assert abs(result.signing_time - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(
        minutes=5
    )


# --- valid ----------------------------------------------------------------------------------


def test_valid_opaque(pki: Pki) -> None:
    raw = _sign(pki, pki.alice, "-nodetach")
    assert b"pkcs7-mime" in raw
    result = _verify(pki, raw)
    _assert_valid(result, pki.alice)
    # openssl canonicalises the text to CRLF before signing; the inner entity is returned.
    assert result.content == MESSAGE
    assert result.chain == (pki.alice.cert, pki.ca.cert)


def test_valid_detached(pki: Pki) -> None:
    raw = _sign(pki, pki.alice)
    assert b"multipart/signed" in raw
    result = _verify(pki, raw)
    _assert_valid(result, pki.alice)
    assert result.content == MESSAGE


def test_detached_survives_lf_line_endings(pki: Pki) -> None:
    # Mail stores often hold LF-only text; the signature is over the canonical CRLF form.
    raw = _sign(pki, pki.alice).replace(b"\r\n", b"\n")
    assert b"\r" not in raw
    result = _verify(pki, raw)
    _assert_valid(result, pki.alice)
    assert result.content == MESSAGE


@pytest.mark.parametrize("detach", [True, False])
def test_valid_openssl_smime_command(pki: Pki, detach: bool) -> None:
    raw = _sign(pki, pki.alice, *([] if detach else ["-nodetach"]), command="smime")
    _assert_valid(_verify(pki, raw), pki.alice)


def test_valid_ecdsa(pki: Pki) -> None:
    _assert_valid(_verify(pki, _sign(pki, pki.ec_signer)), pki.ec_signer)


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_valid_rsa_pss(pki: Pki, digest: str) -> None:
    raw = _sign(pki, pki.alice, "-md", digest, "-keyopt", "rsa_padding_mode:pss")
    parts = email.message_from_bytes(raw).get_payload()
    assert isinstance(parts, list)
    signature_part = parts[1]
    assert isinstance(signature_part, email.message.Message)
    der = signature_part.get_payload(decode=True)
    info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert info["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    result = _verify(pki, raw)
    assert result.valid, result.reason
    assert result.digest_algorithm == digest


def test_valid_without_embedded_ca_and_with_subject_key_identifier(pki: Pki) -> None:
    # -keyid makes the SignerInfo name the signer by SKI instead of issuer and serial.
    result = _verify(pki, _sign(pki, pki.alice, "-keyid"))
    _assert_valid(result, pki.alice)


def test_signature_judged_at_signing_time_not_now(pki: Pki) -> None:
    # Verified a year later, after the certificate has expired: the signing time counts.
    result = _verify(pki, _sign(pki, pki.alice), now=NOW + 365 * DAY)
    assert result.valid, result.reason


# --- tampering ------------------------------------------------------------------------------


def test_tampered_detached_content(pki: Pki) -> None:
    raw = _sign(pki, pki.alice)
    assert raw.count(b"numbers: 42") == 1
    result = _verify(pki, raw.replace(b"numbers: 42", b"numbers: 43"))
    assert not result.valid
    assert result.reason == "content digest mismatch"
    assert result.signer_fingerprint == pki.alice.fingerprint


def test_tampered_signature_bytes(pki: Pki) -> None:
    der = _opaque_der(pki, pki.alice)
    assert _verify(pki, _opaque(der)).valid
    signature = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
    start = der.index(signature)
    mutated = bytearray(der)
    mutated[start + 10] ^= 0x01
    result = _verify(pki, _opaque(bytes(mutated)))
    assert not result.valid
    assert result.reason == "signature does not verify"


def test_tampered_opaque_content(pki: Pki) -> None:
    der = _opaque_der(pki, pki.alice)
    assert der.count(b"numbers: 42") == 1
    result = _verify(pki, _opaque(der.replace(b"numbers: 42", b"numbers: 43")))
    assert result.reason == "content digest mismatch"
    assert not result.valid


# --- certificate problems -------------------------------------------------------------------


def test_expired_certificate(pki: Pki) -> None:
    result = _verify(pki, _sign(pki, pki.expired))
    assert not result.valid
    assert result.reason == "certificate expired"
    assert result.reason_at == pki.expired.cert.not_valid_after_utc
    assert result.signer_fingerprint == pki.expired.fingerprint


def test_not_yet_valid_certificate(pki: Pki) -> None:
    result = _verify(pki, _sign(pki, pki.future))
    assert not result.valid
    assert result.reason == "certificate not yet valid"
    assert result.reason_at == pki.future.cert.not_valid_before_utc


def test_unknown_ca(pki: Pki) -> None:
    result = _verify(pki, _sign(pki, pki.stranger, ca=pki.other_ca))
    assert not result.valid
    assert result.reason == "no chain to a trusted CA" and result.reason_at is None
    # The same message is fine for someone who trusts that CA.
    assert verify_smime(_sign(pki, pki.stranger, ca=pki.other_ca), [pki.other_ca.cert]).valid


def test_revoked_via_crl(pki: Pki) -> None:
    raw = _sign(pki, pki.revoked)
    assert _verify(pki, raw).valid  # without the CRL nothing says otherwise
    result = _verify(pki, raw, crls=[pki.crl])
    assert not result.valid
    assert result.reason == "certificate revoked"
    entry = pki.crl.get_revoked_certificate_by_serial_number(pki.revoked.cert.serial_number)
    assert entry is not None and result.reason_at == entry.revocation_date_utc
    # The CRL lists only that serial: other signers of the same CA stay valid.
    assert _verify(pki, _sign(pki, pki.alice), crls=[pki.crl]).valid


def test_crl_from_another_issuer_is_ignored(pki: Pki) -> None:
    # A CRL signed by the wrong key must not be able to revoke (or vouch for) anything.
    assert isinstance(pki.other_ca.key, rsa.RSAPrivateKey)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca.cert.subject)
        .last_update(NOW - DAY)
        .next_update(NOW + DAY)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(pki.alice.cert.serial_number)
            .revocation_date(NOW - DAY)
            .build()
        )
        .sign(pki.other_ca.key, hashes.SHA256())
    )
    assert _verify(pki, _sign(pki, pki.alice), crls=[forged]).valid


def test_signer_without_email_protection(pki: Pki) -> None:
    result = _verify(pki, _sign(pki, pki.no_eku))
    assert not result.valid
    assert result.reason == "signer certificate is not valid for email protection"


def test_signing_time_in_the_future(pki: Pki) -> None:
    result = _verify(pki, _sign(pki, pki.alice), now=NOW - DAY)
    assert not result.valid
    assert result.reason == "signing time is in the future"


# --- malformed input ------------------------------------------------------------------------


def test_garbage_pkcs7_mime_is_malformed(pki: Pki) -> None:
    with pytest.raises(MalformedMessage) as info:
        _verify(pki, _opaque(b"this is not DER at all" * 4))
    assert isinstance(info.value, SmimeError)
    assert isinstance(info.value, CryptoError)


@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: text/plain\r\n\r\nhello\r\n",
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n",
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\n",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n',
    ],
)
def test_other_malformed_inputs(pki: Pki, raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        _verify(pki, raw)


def test_truncated_signature_is_malformed(pki: Pki) -> None:
    der = _opaque_der(pki, pki.alice)
    with pytest.raises(MalformedMessage):
        _verify(pki, _opaque(der[: len(der) // 2]))


# --- intermediates --------------------------------------------------------------------------


def test_chain_through_intermediate_from_the_message(pki: Pki) -> None:
    intermediate = _make_ca(pki.directory, "intermediate", pki.ca)
    signer = _make_signer(pki.directory, "viaintermediate", intermediate)
    result = _verify(pki, _sign(pki, signer, ca=intermediate))
    assert result.valid, result.reason
    assert result.chain == (signer.cert, intermediate.cert, pki.ca.cert)
    # Without the intermediate in the message there is no path.
    out = _sign(pki, signer, "-nocerts", "-certfile", str(signer.cert_pem), ca=intermediate)
    assert _verify(pki, out).reason == "no chain to a trusted CA"


def test_intermediate_that_is_not_a_ca(pki: Pki) -> None:
    fake = _make_ca(pki.directory, "notaca", pki.ca, is_ca=False)
    signer = _make_signer(pki.directory, "viafake", fake)
    result = _verify(pki, _sign(pki, signer, ca=fake))
    assert not result.valid
    assert result.reason == "issuing certificate is not a CA"
