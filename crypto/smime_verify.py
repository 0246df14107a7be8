"""S/MIME (CMS SignedData, RFC 5652 / RFC 8551) signature verification for inbound mail.

Accepted forms: multipart/signed with a detached application/(x-)pkcs7-signature part, and
opaque application/(x-)pkcs7-mime with smime-type=signed-data. Signatures: RSA PKCS#1 v1.5,
RSA-PSS and ECDSA over SHA-224/256/384/512.

Contract: a message that cannot be parsed raises ``MalformedMessage``; anything about the
message that merely fails verification (bad signature, wrong digest, untrusted or expired
certificate, revocation, refused algorithm) returns ``VerifyResult(valid=False, reason=...)``.
Callers can thus always tell "broken input" from "not trustworthy" without catching.

Chain validation is done here instead of with ``cryptography.x509.verification``: in
cryptography 50 that API only offers TLS server/client verifiers, whose policy (serverAuth /
clientAuth EKU, DNS/IP SAN matching) does not fit S/MIME's emailProtection and signing-time
semantics. What we check: signatures along the path, validity at the signing time,
basicConstraints cA and keyCertSign on issuers, pathLenConstraint, keyUsage/EKU of the
signer, and revocation against caller-supplied CRLs. Not done: name constraints, policy
mappings, rejection of unknown critical extensions, CRL freshness (nextUpdate), OCSP.

Pinned certificates: a self-signed certificate that an admin approved for a partner (its
fingerprint compared by phone) has no chain. A signer certificate that is exactly one of the
``pinned`` certificates is valid on its own (validity dates and signer key usage still
checked), and the result says so (``pinned``). A pinned certificate is never an issuer: a
certificate it signed does not chain to it.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.message import Message

# asn1crypto ships no type information; its values are Any to mypy.
from asn1crypto import cms  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.x509.oid import ExtendedKeyUsageOID

from crypto.canonical import canonicalize_entity
from crypto.cms_common import entity_body, entity_headers, identifies
from crypto.smime import MalformedMessage, SmimeError

__all__ = ["MalformedMessage", "SmimeError", "VerifyResult", "verify_smime"]

# SHA-1 and MD5 are collision-broken; a signature over them proves nothing about the content.
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_OPAQUE_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
# A path longer than this is almost certainly a loop or an attack on our CPU, not a real PKI.
_MAX_PATH = 8
# Tolerated clock difference before a signingTime counts as "in the future".
_CLOCK_SKEW = datetime.timedelta(minutes=5)

REASON_SIGNATURE = "signature does not verify"
REASON_DIGEST = "content digest mismatch"
REASON_NO_CHAIN = "no chain to a trusted CA"
REASON_REVOKED = "certificate revoked"
REASON_EXPIRED = "certificate expired"
REASON_NOT_YET_VALID = "certificate not yet valid"


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    reason: str  # empty when valid, otherwise why not
    content: bytes  # opaque: the inner MIME entity; detached: the first part, canonical form
    digest_algorithm: str  # e.g. "sha256"; as named by the signer even if refused
    signer_fingerprint: str | None = None  # SHA-256 of the signer certificate DER, hex
    signer_subject: str | None = None  # RFC 4514 string
    signer_emails: tuple[str, ...] = ()  # SAN rfc822Name entries
    signing_time: datetime.datetime | None = None  # signingTime attribute, UTC
    # When what ``reason`` names happened, where it has a date: a certificate's expiry or
    # start of validity, its revocation (from the CRL). UTC; None otherwise.
    reason_at: datetime.datetime | None = None
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)  # signer .. anchor
    # Valid because the signer certificate is one of the caller's pinned certificates, not
    # through a chain to a trust anchor.
    pinned: bool = False

    def __repr__(self) -> str:  # content is mail content: keep it out of logs
        return (
            f"VerifyResult(valid={self.valid}, reason={self.reason!r}, "
            f"signer={self.signer_fingerprint}, {self.digest_algorithm}, "
            f"{len(self.content)} bytes)"
        )


def verify_smime(
    raw_mime: bytes,
    trust_anchors: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: datetime.datetime | None = None,
    pinned: Sequence[x509.Certificate] = (),
) -> VerifyResult:
    """Verify a signed S/MIME entity (headers plus body) against ``trust_anchors``, or
    against ``pinned`` signer certificates (see the module docstring).

    Raises ``MalformedMessage`` only for unparseable input; see the module docstring.
    """
    current = now if now is not None else datetime.datetime.now(datetime.UTC)
    if current.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    headers = entity_headers(raw_mime)
    content_type = headers.get_content_type()
    if content_type == "multipart/signed":
        entity = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw_mime)
        content, der = _detached_parts(raw_mime, entity)
        signed_data = _parse_signed_data(der)
        if signed_data["encap_content_info"]["content"].native is not None:
            # Two candidate contents would leave it ambiguous which one was vouched for.
            raise MalformedMessage("multipart/signed signature carries its own content")
    elif content_type in _OPAQUE_TYPES:
        smime_type = str(headers.get_param("smime-type", "") or "").lower()
        if smime_type and smime_type != "signed-data":
            raise MalformedMessage(f"S/MIME entity is {smime_type}, not signed-data")
        try:
            body = entity_body(raw_mime, headers)
        except ValueError as exc:
            raise MalformedMessage(f"S/MIME entity body: {exc}") from None
        if not body:
            raise MalformedMessage("S/MIME entity has no body")
        signed_data = _parse_signed_data(body)
        inner = signed_data["encap_content_info"]["content"].native
        if not isinstance(inner, bytes):
            raise MalformedMessage("opaque signed-data has no encapsulated content")
        content = inner
    else:
        raise MalformedMessage(f"not an S/MIME signed entity: content type {content_type}")
    return _verify_signed_data(signed_data, content, trust_anchors, crls, current, pinned)


# --- MIME -----------------------------------------------------------------------------------


def _decoded_body(part: Message) -> bytes:
    body = part.get_payload(decode=True)
    if not isinstance(body, bytes) or not body:
        raise MalformedMessage("S/MIME entity has no body")
    return body


def _detached_parts(raw_mime: bytes, entity: Message) -> tuple[bytes, bytes]:
    """(signed first part as transmitted in canonical CRLF form, signature DER)."""
    protocol = str(entity.get_param("protocol", "") or "").lower()
    if protocol and protocol not in _SIGNATURE_TYPES:
        raise MalformedMessage(f"multipart/signed protocol {protocol} is not S/MIME")
    boundary = entity.get_boundary()
    parts = entity.get_payload()
    if not boundary or not isinstance(parts, list) or len(parts) != 2:
        raise MalformedMessage("multipart/signed needs a boundary and exactly two parts")
    signature = parts[1]
    if not isinstance(signature, Message) or signature.get_content_type() not in _SIGNATURE_TYPES:
        raise MalformedMessage("second part of multipart/signed is not a pkcs7-signature")
    # The email parser normalises what it re-serialises, so the signed bytes are cut out of the
    # raw input between the first two delimiters. The line break before a delimiter belongs to
    # the delimiter (RFC 2046 5.1.1), not to the signed part.
    header_end = re.search(rb"\r?\n\r?\n", raw_mime)
    if header_end is None:
        raise MalformedMessage("message has no body")
    body_start = header_end.end()
    quoted = re.escape(boundary.encode("ascii", "surrogateescape"))
    # The body may begin directly with the delimiter, so the blank line's break counts as the
    # start of a line for the first match.
    first = re.compile(rb"(?:^|\n)--" + quoted + rb"[ \t]*\r?\n").search(raw_mime, body_start - 1)
    if first is None:
        raise MalformedMessage("multipart/signed delimiter not found")
    second = re.compile(rb"\r?\n--" + quoted + rb"(?:--)?[ \t]*(?:\r?\n|$)").search(
        raw_mime, first.end()
    )
    if second is None:
        raise MalformedMessage("multipart/signed has no second delimiter")
    signed = raw_mime[first.end() : second.start()]
    # RFC 8551 3.1.1: the signature is over the canonical (CRLF) form; transports and mbox
    # storage often turn CRLF into LF, which must not break the signature. Canonical is CRLF
    # for text only: a body in binary (possible inside an encryption) is signed as octets.
    canonical = canonicalize_entity(signed)
    return canonical, _decoded_body(signature)


# --- CMS ------------------------------------------------------------------------------------


def _parse_signed_data(der: bytes) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
        signed_data = info["content"]
        # asn1crypto parses lazily; forcing the tree reports truncation and garbage here as
        # malformed instead of as a verification failure later.
        _ = signed_data.native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise MalformedMessage(f"not a valid CMS structure: {exc}") from None
    if content_type != "signed_data" or not isinstance(signed_data, cms.SignedData):
        raise MalformedMessage(f"CMS content is {content_type}, not signed-data")
    if len(signed_data["signer_infos"]) == 0:
        raise MalformedMessage("signed-data has no signer")
    return signed_data


def _embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for choice in signed_data["certificates"] or []:
        # Attribute certificates and other legacy choices cannot sign anything; skip them.
        if choice.name != "certificate":
            continue
        try:
            certs.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except ValueError:
            continue  # an unparseable extra certificate only matters if it was needed
    return certs


def _verify_signed_data(
    signed_data: cms.SignedData,
    content: bytes,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime.datetime,
    pinned: Sequence[x509.Certificate],
) -> VerifyResult:
    certs = _embedded_certificates(signed_data)
    e_content_type = signed_data["encap_content_info"]["content_type"].native
    results = [
        _verify_signer(info, e_content_type, content, certs, anchors, crls, now, pinned)
        for info in signed_data["signer_infos"]
    ]
    # Several signers are rare (e.g. RSA and EC in parallel); one valid signature suffices,
    # otherwise the first signer's reason is the most useful to report.
    return next((r for r in results if r.valid), results[0])


def _verify_signer(
    info: cms.SignerInfo,
    e_content_type: str,
    content: bytes,
    certs: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime.datetime,
    pinned: Sequence[x509.Certificate],
) -> VerifyResult:
    digest_name = str(info["digest_algorithm"]["algorithm"].native)
    # Filled in step by step; every early return reports as much as is known by then.
    result = VerifyResult(valid=False, reason="", content=content, digest_algorithm=digest_name)
    signer = next((c for c in certs if identifies(info["sid"], c)), None)
    if signer is None:
        return replace(result, reason="signer certificate not included in the message")
    result = replace(
        result,
        signer_fingerprint=signer.fingerprint(hashes.SHA256()).hex(),
        signer_subject=signer.subject.rfc4514_string(),
        signer_emails=_emails(signer),
    )
    if digest_name not in _DIGESTS:
        return replace(result, reason=f"digest algorithm {digest_name} is not accepted")
    hash_cls = _DIGESTS[digest_name]

    signed_attrs = info["signed_attrs"]
    digest_ok = True
    if signed_attrs.native is None:
        # RFC 5652 5.4: without signed attributes the signature covers the content itself.
        signed_bytes = content
    else:
        attrs = _attributes(signed_attrs)
        if attrs is None:
            return replace(result, reason="signed attributes are malformed")
        if attrs.get("content_type") != e_content_type:
            return replace(result, reason="content-type attribute missing or mismatched")
        result = replace(result, signing_time=_as_utc(attrs.get("signing_time")))
        # The signature is over the DER SET OF (tag 0x31), not the [0] IMPLICIT form sent;
        # the received content octets are reused so a re-encoding quirk cannot break it.
        raw = signed_attrs.contents
        signed_bytes = b"\x31" + _der_length(len(raw)) + raw
        expected = attrs.get("message_digest")
        hasher = hashes.Hash(hash_cls())
        hasher.update(content)
        digest_ok = isinstance(expected, bytes) and hmac.compare_digest(expected, hasher.finalize())

    # Signature first: if it fails, the attributes (including messageDigest) are not the
    # signer's, so "digest mismatch" would be the less accurate reason.
    sig_error = _check_signature(info, signer, signed_bytes, hash_cls)
    if sig_error:
        return replace(result, reason=sig_error)
    if not digest_ok:
        return replace(result, reason=REASON_DIGEST)

    signing_time = result.signing_time
    if signing_time is not None and signing_time > now + _CLOCK_SKEW:
        return replace(result, reason="signing time is in the future")
    # RFC 8551 leaves the reference time to the verifier; the signer's claimed signingTime is
    # what the brief asks for, so a message signed while the certificate was valid stays valid
    # after expiry. It is only a claim: a stolen, expired key can backdate it.
    at = signing_time if signing_time is not None else now
    if any(signer == cert for cert in pinned):
        error, error_at = _check_pinned(signer, at)
        if error:
            return replace(result, reason=error, reason_at=error_at)
        return replace(result, valid=True, chain=(signer,), pinned=True)
    chain_error, chain, reason_at = _validate_chain(signer, certs, anchors, crls, at)
    if chain_error:
        return replace(result, reason=chain_error, reason_at=reason_at)
    return replace(result, valid=True, chain=tuple(chain))


def _attributes(signed_attrs: cms.CMSAttributes) -> dict[str, object] | None:
    """Single-valued attributes by name; None when one is repeated or multi-valued."""
    found: dict[str, object] = {}
    try:
        for attr in signed_attrs:
            name = attr["type"].native
            values = attr["values"]
            # RFC 5652 11: content-type, message-digest and signing-time MUST be single.
            if name in found or len(values) != 1:
                return None
            found[name] = values[0].native
    except (ValueError, TypeError):
        return None
    return found


def _as_utc(value: object) -> datetime.datetime | None:
    if not isinstance(value, datetime.datetime):
        return None
    return value.astimezone(datetime.UTC)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _check_signature(
    info: cms.SignerInfo,
    signer: x509.Certificate,
    data: bytes,
    hash_cls: type[hashes.HashAlgorithm],
) -> str:
    """Empty string when the signature verifies, else the reason."""
    algorithm = info["signature_algorithm"]
    try:
        kind = algorithm.signature_algo
    except ValueError:
        return f"signature algorithm {algorithm['algorithm'].native} is not accepted"
    signature = info["signature"].native
    key = signer.public_key()
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, PKCS1v15(), hash_cls())
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            pss = _pss_padding(algorithm["parameters"].native, hash_cls)
            if pss is None:
                return "RSA-PSS parameters are not accepted"
            key.verify(signature, data, pss, hash_cls())
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            return f"signature algorithm {kind} does not fit the signer key or is not accepted"
    except InvalidSignature:
        return REASON_SIGNATURE
    return ""


def _pss_padding(params: object, hash_cls: type[hashes.HashAlgorithm]) -> PSS | None:
    # Absent fields would mean SHA-1 defaults (RFC 4055), which we refuse like SHA-1 digests;
    # the PSS hash must also be the SignerInfo digest so one message has one hash.
    if not isinstance(params, dict):
        return None
    hash_name = params["hash_algorithm"]["algorithm"]
    mgf = params["mask_gen_algorithm"]
    mgf_hash = (mgf.get("parameters") or {}).get("algorithm")
    if mgf["algorithm"] != "mgf1" or hash_name != hash_cls.name or mgf_hash != hash_cls.name:
        return None
    if params.get("trailer_field", "trailer_field_bc") != "trailer_field_bc":
        return None
    return PSS(mgf=MGF1(hash_cls()), salt_length=int(params["salt_length"]))


# --- certificates ---------------------------------------------------------------------------


def _emails(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.RFC822Name))


def _is_anchor(cert: x509.Certificate, anchors: Sequence[x509.Certificate]) -> bool:
    return any(cert == anchor for anchor in anchors)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _build_path(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> list[x509.Certificate] | None:
    """Signer .. anchor, trying every candidate issuer (depth-first); None if no path."""

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        tip = path[-1]
        if _is_anchor(tip, anchors):
            return path
        if len(path) > _MAX_PATH:
            return None
        # Anchors first: a cross-signed intermediate in the message must not lengthen a path
        # that can end at a trust anchor right away.
        for candidate in [*anchors, *pool]:
            if candidate in path or not _issued_by(tip, candidate):
                continue
            found = extend([*path, candidate])
            if found is not None:
                return found
        return None

    return extend([signer])


def _validate_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime.datetime,
) -> tuple[str, list[x509.Certificate], datetime.datetime | None]:
    """("", path, None) when the signer chains to an anchor and passes every check, else
    (reason, [], the date the reason refers to, if it has one)."""
    path = _build_path(signer, pool, anchors)
    if path is None:
        return REASON_NO_CHAIN, [], None
    # A trust anchor is a name and key we were told to trust (RFC 5280 6.1.1 d); its own
    # validity dates and extensions are not part of path validation.
    checked = path if not _is_anchor(path[-1], anchors) else path[:-1]
    for index, cert in enumerate(checked):
        if at < cert.not_valid_before_utc:
            return REASON_NOT_YET_VALID, [], cert.not_valid_before_utc
        if at > cert.not_valid_after_utc:
            return REASON_EXPIRED, [], cert.not_valid_after_utc
        revoked_at = _revoked(cert, path[index + 1], crls)
        if revoked_at is not None:
            return REASON_REVOKED, [], revoked_at
        if index > 0:
            error = _check_ca(cert, intermediates_below=index - 1)
            if error:
                return error, [], None
    return _check_signer_usage(signer), path, None


def _check_pinned(
    signer: x509.Certificate, at: datetime.datetime
) -> tuple[str, datetime.datetime | None]:
    """What a chain would check of the signer itself: its validity at ``at``, its usage.
    Revocation is the directory's (an admin revokes the pinned key there)."""
    if at < signer.not_valid_before_utc:
        return REASON_NOT_YET_VALID, signer.not_valid_before_utc
    if at > signer.not_valid_after_utc:
        return REASON_EXPIRED, signer.not_valid_after_utc
    return _check_signer_usage(signer), None


def _revoked(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
) -> datetime.datetime | None:
    """When ``cert`` was revoked according to a CRL its issuer signed; None if it was not."""
    issuer_key = issuer.public_key()
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        # Only a CRL the issuer really signed may revoke; a forged one is ignored, not trusted.
        if not isinstance(issuer_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            continue
        if not crl.is_signature_valid(issuer_key):
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            return entry.revocation_date_utc
    return None


def _check_ca(cert: x509.Certificate, intermediates_below: int) -> str:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "issuing certificate is not a CA"
    if not constraints.ca:
        return "issuing certificate is not a CA"
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        return "CA path length constraint exceeded"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    return "" if usage.key_cert_sign else "issuing certificate may not sign certificates"


def _check_signer_usage(cert: x509.Certificate) -> str:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return "signer certificate key usage does not allow signing"
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku:
            return "signer certificate is not valid for email protection"
    except x509.ExtensionNotFound:
        pass
    return ""
