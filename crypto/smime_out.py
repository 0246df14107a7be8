"""Outbound S/MIME (RFC 8551): sign and encrypt MIME entities we send.

Signing: ``multipart/signed`` (RFC 1847, detached CMS SignedData), SHA-256, with the signing
time, the signer certificate and any chain certificates in the signature.

Encryption: ``application/pkcs7-mime``; AuthEnvelopedData with AES-256-GCM (RFC 5083/5084)
or EnvelopedData with AES-256-CBC, the content-encryption key transported to each RSA
recipient with RSAES-OAEP/SHA-256 (RFC 8017, parameters per RFC 4055).

Why the envelope is built here and not by ``PKCS7EnvelopeBuilder``: in cryptography 50 that
builder only does AES-128/256-CBC EnvelopedData with PKCS#1 v1.5 key transport. PKCS#1 v1.5
invites padding-oracle attacks on the recipient, and CBC has no integrity, so we assemble
the CMS structures with asn1crypto and use cryptography only for the primitives.

Order: callers that sign and encrypt should sign first and encrypt the signed entity
(RFC 8551 section 3.7), so the signature is hidden and covers the clear content.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# asn1crypto ships no type information; its values are Any to mypy.
from asn1crypto import algos, cms  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import pkcs7

from crypto.canonical import base64_lines, canonicalize, mime_boundary
from crypto.cms_common import GcmParameters
from crypto.smime import SmimeError, UnsupportedAlgorithm

__all__ = [
    "MIN_RSA_BITS",
    "SigningError",
    "UnsupportedRecipientKey",
    "canonicalize",
    "encrypt_mime",
    "recipient_problem",
    "sign_mime",
]

# NIST SP 800-57 / BSI TR-02102: RSA below 2048 bits no longer protects confidentiality.
MIN_RSA_BITS = 2048

_CEK_LEN = 32  # AES-256 for both modes
_GCM_NONCE_LEN = 12  # RFC 5084 recommends 12 octets
_GCM_TAG_LEN = 16  # the longest ICV; RFC 5084 allows 12..16


class UnsupportedRecipientKey(UnsupportedAlgorithm):
    """A recipient certificate cannot be used for key transport (not RSA, too small, or
    its key usage forbids key encipherment)."""


class SigningError(SmimeError):
    """The signature could not be made (signer key type, or key and certificate disagree)."""


def sign_mime(
    entity: bytes,
    signer_cert: x509.Certificate,
    signer_key: PrivateKeyTypes,
    *,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Wrap a MIME entity (headers + body) in a ``multipart/signed`` entity.

    The first part is ``entity`` with CRLF line endings, unchanged otherwise; the second is a
    detached SHA-256 CMS signature over exactly those bytes. The caller must make sure the
    entity survives transport unchanged (7-bit or base64/quoted-printable bodies), because
    any re-encoding by a relay breaks a multipart/signed signature.
    """
    if not isinstance(signer_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SigningError("signer key must be RSA or EC")
    if signer_cert.public_key() != signer_key.public_key():
        raise SigningError("signer key does not belong to the signer certificate")
    content = canonicalize(entity)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content)
    builder = builder.add_signer(signer_cert, signer_key, hashes.SHA256())
    for cert in chain:
        builder = builder.add_certificate(cert)
    # Binary: sign the bytes as given (already canonical) instead of letting the builder
    # re-canonicalise them as text. The builder adds the signed attributes contentType,
    # signingTime, messageDigest and SMIMECapabilities, and includes the signer certificate.
    signature = builder.sign(
        serialization.Encoding.DER,
        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
    )
    boundary = mime_boundary(content, b"----xgate-signed-")
    # We write the multipart ourselves instead of using Encoding.SMIME, which announces the
    # legacy "application/x-pkcs7-signature" and would re-canonicalise the content.
    # RFC 2046: the CRLF before a delimiter belongs to the delimiter, so "content" is
    # followed by an extra CRLF and the signed part is exactly "content".
    return b"".join(
        [
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n',
            b' micalg=sha-256; boundary="' + boundary + b'"\r\n',
            b"\r\n",
            b"This is a cryptographically signed message in MIME format.\r\n",
            b"\r\n--" + boundary + b"\r\n",
            content,
            b"\r\n--" + boundary + b"\r\n",
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n',
            b"Content-Transfer-Encoding: base64\r\n",
            b'Content-Disposition: attachment; filename="smime.p7s"\r\n',
            b"Content-Description: S/MIME Cryptographic Signature\r\n",
            b"\r\n",
            base64_lines(signature),
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )


def encrypt_mime(entity: bytes, recipients: Sequence[x509.Certificate], *, gcm: bool) -> bytes:
    """Encrypt a MIME entity (headers + body) to every certificate in ``recipients``.

    ``gcm=True`` gives AuthEnvelopedData/AES-256-GCM (tamper-evident; preferred whenever the
    receiving side supports it); ``gcm=False`` gives EnvelopedData/AES-256-CBC for older
    clients. Each recipient must have an RSA key of at least ``MIN_RSA_BITS`` bits; otherwise
    ``UnsupportedRecipientKey`` is raised before anything is encrypted.
    """
    if not recipients:
        raise ValueError("at least one recipient certificate is required")
    # Check every recipient before encrypting, so a bad certificate never yields a message
    # that some recipients can read and others cannot.
    keys = [_recipient_key(cert) for cert in recipients]
    content = canonicalize(entity)
    cek = os.urandom(_CEK_LEN)
    recipient_infos = [
        _key_trans_info(cert, key, cek) for cert, key in zip(recipients, keys, strict=True)
    ]
    if gcm:
        envelope = _auth_enveloped(content, cek, recipient_infos)
        info = cms.ContentInfo(
            {"content_type": "authenticated_enveloped_data", "content": envelope}
        )
        smime_type = b"authEnveloped-data"
    else:
        envelope = _enveloped(content, cek, recipient_infos)
        info = cms.ContentInfo({"content_type": "enveloped_data", "content": envelope})
        smime_type = b"enveloped-data"
    der: bytes = info.dump()
    return b"".join(
        [
            b"MIME-Version: 1.0\r\n",
            b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type + b";\r\n",
            b' name="smime.p7m"\r\n',
            b"Content-Transfer-Encoding: base64\r\n",
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n',
            b"Content-Description: S/MIME Encrypted Message\r\n",
            b"\r\n",
            base64_lines(der),
        ]
    )


def recipient_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot receive encrypted mail from us, or None if it can."""
    try:
        _recipient_key(cert)
    except UnsupportedRecipientKey as exc:
        return str(exc)
    return None


def _recipient_key(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    subject = cert.subject.rfc4514_string()
    if not isinstance(key, rsa.RSAPublicKey):
        # EC recipients need KeyAgreeRecipientInfo (ECDH, RFC 5753), which we do not build.
        raise UnsupportedRecipientKey(
            f"recipient {subject}: only RSA certificates are supported, not "
            f"{type(key).__name__.removeprefix('_')}"
        )
    if key.key_size < MIN_RSA_BITS:
        raise UnsupportedRecipientKey(
            f"recipient {subject}: RSA key of {key.key_size} bits is below {MIN_RSA_BITS}"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return key  # no KeyUsage extension: every use is allowed (RFC 5280 4.2.1.3)
    if not usage.key_encipherment:
        raise UnsupportedRecipientKey(
            f"recipient {subject}: certificate key usage forbids key encipherment"
        )
    return key


def _key_trans_info(cert: x509.Certificate, key: rsa.RSAPublicKey, cek: bytes) -> cms.RecipientInfo:
    encrypted_key = key.encrypt(
        cek, OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    # RFC 4055 RSAES-OAEP-params; the pSourceAlgorithm default (empty label) is left out, as
    # DER requires for default values.
    oaep_params = algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    )
    return cms.RecipientInfo(
        name="ktri",
        value=cms.KeyTransRecipientInfo(
            {
                # Version 0 goes with issuerAndSerialNumber (RFC 5652 section 6.2.1); that
                # identifier works for every certificate, with or without a SKI extension.
                "version": "v0",
                "rid": cms.RecipientIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(
                        {
                            "issuer": asn1_x509.Name.load(cert.issuer.public_bytes()),
                            "serial_number": cert.serial_number,
                        }
                    ),
                ),
                "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": oaep_params},
                "encrypted_key": encrypted_key,
            }
        ),
    )


def _auth_enveloped(
    content: bytes, cek: bytes, recipient_infos: list[cms.RecipientInfo]
) -> cms.AuthEnvelopedData:
    # A fresh random key per message makes a random 96-bit nonce safe: it is used once.
    nonce = os.urandom(_GCM_NONCE_LEN)
    # No authenticated attributes, so the AAD is empty (RFC 5083 section 2.2).
    sealed = AESGCM(cek).encrypt(nonce, content, None)
    ciphertext, tag = sealed[:-_GCM_TAG_LEN], sealed[-_GCM_TAG_LEN:]
    params = GcmParameters({"aes_nonce": nonce, "aes_icvlen": _GCM_TAG_LEN})
    return cms.AuthEnvelopedData(
        {
            "version": "v0",  # RFC 5083: always 0
            "recipient_infos": recipient_infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": "aes256_gcm", "parameters": params},
                "encrypted_content": ciphertext,
            },
            "mac": tag,
        }
    )


def _enveloped(
    content: bytes, cek: bytes, recipient_infos: list[cms.RecipientInfo]
) -> cms.EnvelopedData:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return cms.EnvelopedData(
        {
            # RFC 5652 section 6.1: 0 when there is no originator info, no unprotected
            # attributes and every RecipientInfo is a version-0 KeyTransRecipientInfo.
            "version": "v0",
            "recipient_infos": recipient_infos,
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
                "encrypted_content": ciphertext,
            },
        }
    )
