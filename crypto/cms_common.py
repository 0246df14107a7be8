"""CMS pieces shared by S/MIME decryption, verification and the outbound side."""

from __future__ import annotations

from asn1crypto import cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509


class GcmParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 GCMParameters; asn1crypto leaves them as an opaque Any."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


def identifies(rid: cms.RecipientIdentifier, cert: x509.Certificate) -> bool:
    """Whether a recipient or signer identifier (issuer and serial, or subject key
    identifier) names ``cert``."""
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        # asn1crypto's Name equality applies the RFC 5280 comparison rules.
        return bool(ias["issuer"] == asn1_x509.Name.load(cert.issuer.public_bytes()))
    if rid.name == "subject_key_identifier":
        return bool(rid.chosen.native == _subject_key_id(cert))
    return False


def _subject_key_id(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        # Senders compute the RFC 5280 method-1 identifier when the extension is missing.
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def cms_content_type(der: bytes) -> str | None:
    """The ContentInfo's content type ("signed_data", "enveloped_data" ...), or None.

    Only the outer type is read, so this is cheap and safe on garbage; the full parse with
    its checks happens where the content is used.
    """
    try:
        info = cms.ContentInfo.load(der)
        value = info["content_type"].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None
    return value if isinstance(value, str) else None
