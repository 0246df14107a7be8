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
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message

# asn1crypto ships no type information; its values are Any to mypy.
from asn1crypto import cms, core  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.x509.oid import ExtendedKeyUsageOID

from crypto.canonical import canonicalize_entity
from crypto.chain_cache import ChainCache
from crypto.cms_common import entity_body, entity_headers, identifies
from crypto.cms_signed_attrs import read_signed_attributes
from crypto.mime_raw import body_parts, entity_at, find_dashed
from crypto.smime import MalformedMessage, SmimeError

__all__ = ["ChainCache", "MalformedMessage", "Pinned", "SmimeError", "VerifyResult",
           "verify_smime"]

# Pinned certificates, or a lookup of them that returns self-signed certificates only (as
# gateway.keydir's pinned_certificates does): it is only called when the signer could be one
# of them (it is self-issued), which spares the caller's database nearly every time.
Pinned = Sequence[x509.Certificate] | Callable[[], Sequence[x509.Certificate]]

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
    pinned: Pinned = (),
    chain_cache: ChainCache | None = None,
    headers: Message | None = None,
) -> VerifyResult:
    """Verify a signed S/MIME entity (headers plus body) against ``trust_anchors``, or
    against ``pinned`` signer certificates (see the module docstring). A ``chain_cache``
    spares the chain validation of a signer whose path validated before (crypto.chain_cache).
    ``headers`` are the entity's header fields if the caller read them already.

    Raises ``MalformedMessage`` only for unparseable input; see the module docstring.
    """
    current = now if now is not None else datetime.datetime.now(datetime.UTC)
    if current.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if headers is None:
        headers = entity_headers(raw_mime)
    content_type = headers.get_content_type()
    if content_type == "multipart/signed":
        content, der = _detached_parts(raw_mime)
        signed_data = _parse_signed_data(der)
        if signed_data.content is not None:
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
        if signed_data.content is None:
            raise MalformedMessage("opaque signed-data has no encapsulated content")
        content = signed_data.content
    else:
        raise MalformedMessage(f"not an S/MIME signed entity: content type {content_type}")
    trust = _Trust(trust_anchors, crls, current, pinned, chain_cache)
    return _verify_signed_data(signed_data, content, trust)


@dataclass
class _Trust:
    """What a signer is judged against, from the caller."""

    anchors: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList]
    now: datetime.datetime
    pinned: Pinned
    chain_cache: ChainCache | None

    def pinned_certificates(self, signer: x509.Certificate) -> Sequence[x509.Certificate]:
        if callable(self.pinned):
            # The lookup yields self-signed certificates only, so a signer that is not even
            # self-issued cannot be one of them: nearly every signer, and no lookup made.
            if signer.issuer != signer.subject:
                return ()
            self.pinned = list(self.pinned())  # asked once per message at most
        return self.pinned


# --- MIME ---------------------------------------------------------------------------------


def _detached_parts(raw_mime: bytes) -> tuple[bytes, bytes]:
    """(signed first part as transmitted in canonical CRLF form, signature DER).

    The parts are found in the raw bytes as the email package would find them
    (crypto.mime_raw), without its full parse and re-serialisation of the signed content.
    """
    entity = entity_at(raw_mime, 0, len(raw_mime))
    protocol = str(entity.headers.get_param("protocol", "") or "").lower()
    if protocol and protocol not in _SIGNATURE_TYPES:
        raise MalformedMessage(f"multipart/signed protocol {protocol} is not S/MIME")
    boundary = entity.headers.get_boundary()
    parts = body_parts(raw_mime, entity)
    if not boundary or parts is None or len(parts) != 2:
        raise MalformedMessage("multipart/signed needs a boundary and exactly two parts")
    signature = entity_at(raw_mime, *parts[1])
    if signature.content_type not in _SIGNATURE_TYPES:
        raise MalformedMessage("second part of multipart/signed is not a pkcs7-signature")
    # The signed bytes are cut out of the raw input between the first two delimiters. The
    # line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1), not to the
    # signed part.
    header_end = re.search(rb"\r?\n\r?\n", raw_mime)
    if header_end is None:
        raise MalformedMessage("message has no body")
    body_start = header_end.end()
    delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
    quoted = re.escape(delimiter)
    # The body may begin directly with the delimiter, so the blank line's break counts as the
    # start of a line for the first match.
    first = _find_line(raw_mime, delimiter, re.compile(rb"(?:^|\n)" + quoted + rb"[ \t]*\r?\n"),
                       body_start - 1)
    if first is None:
        raise MalformedMessage("multipart/signed delimiter not found")
    second = _find_line(raw_mime, delimiter,
                        re.compile(rb"\r?\n" + quoted + rb"(?:--)?[ \t]*(?:\r?\n|$)"),
                        first.end())
    if second is None:
        raise MalformedMessage("multipart/signed has no second delimiter")
    signed = raw_mime[first.end() : second.start()]
    # RFC 8551 3.1.1: the signature is over the canonical (CRLF) form; transports and mbox
    # storage often turn CRLF into LF, which must not break the signature. Canonical is CRLF
    # for text only: a body in binary (possible inside an encryption) is signed as octets.
    canonical = canonicalize_entity(signed)
    body = signature.decoded(raw_mime, strip_eol=True)
    if not body:
        raise MalformedMessage("S/MIME entity has no body")
    return canonical, body


def _find_line(data: bytes, delimiter: bytes, line: re.Pattern[bytes],
               pos: int) -> re.Match[bytes] | None:
    """``line.search(data, pos)`` for a pattern that is at most two characters and then
    ``delimiter``: the delimiter is found with ``bytes.find`` and the pattern only tried just
    before each place it occurs (a regular expression that starts with an optional character
    searches a megabyte many times slower)."""
    found = find_dashed(data, delimiter, max(pos, 0), len(data))
    while found >= 0:
        # The leftmost start first, as search() would report it.
        for start in (found - 2, found - 1, found):
            if start >= max(pos, 0):
                match = line.match(data, start)
                if match is not None:
                    return match
        found = find_dashed(data, delimiter, found + 1, len(data))
    return None


# --- CMS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignerInfo:
    """The fields of a SignerInfo that verification uses, each read once."""

    sid: cms.SignerIdentifier
    digest_algorithm: str
    # The contents octets of the [0] IMPLICIT signed attributes; None when absent.
    signed_attrs: bytes | None
    signature_algorithm: cms.SignedDigestAlgorithm
    signature: bytes


@dataclass(frozen=True)
class _SignedData:
    signers: list[_SignerInfo]
    certificates: list[bytes]  # DER of the certificates the message brings along
    e_content_type: str  # dotted
    content: bytes | None  # the encapsulated content; None when detached


def _parse_signed_data(der: bytes) -> _SignedData:
    """Read every field that verification uses, here, so that truncation and garbage are
    reported as malformed instead of as a verification failure later. asn1crypto parses
    lazily, and only these fields are parsed: ``.native`` of the whole SignedData would also
    convert every embedded certificate and attribute, which cost more than the check."""
    try:
        # strict: the outer length must cover the input exactly (a truncated input fails).
        info = cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
        signed_data = info["content"]
        if content_type != "signed_data" or not isinstance(signed_data, cms.SignedData):
            raise MalformedMessage(f"CMS content is {content_type}, not signed-data")
        encap = signed_data["encap_content_info"]
        e_content_type = encap["content_type"].dotted
        inner = encap["content"]
        # A constructed (BER) octet string is joined by .native; absent content is None.
        content = inner.native if not isinstance(inner, core.Void) else None
        if content is not None and not isinstance(content, bytes):
            # What ParsableOctetString made of it: the octets are what was signed.
            content = inner.contents
        certificates = [choice.chosen.dump() for choice in signed_data["certificates"] or []
                        # Attribute certificates and other legacy choices cannot sign anything.
                        if choice.name == "certificate"]
        signers = [_signer_info(signer) for signer in signed_data["signer_infos"]]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise MalformedMessage(f"not a valid CMS structure: {exc}") from None
    if not signers:
        raise MalformedMessage("signed-data has no signer")
    return _SignedData(signers, certificates, e_content_type, content)


def _signer_info(info: cms.SignerInfo) -> _SignerInfo:
    sid = info["sid"]
    if sid.name == "issuer_and_serial_number":
        _ = sid.chosen["serial_number"].native
        _ = sid.chosen["issuer"].contents
    else:
        _ = sid.chosen.native
    signed_attrs = info["signed_attrs"]
    algorithm = info["signature_algorithm"]
    _ = algorithm["algorithm"].native
    _ = algorithm["parameters"].native  # RSA-PSS parameters, read when checking
    return _SignerInfo(
        sid=sid,
        digest_algorithm=str(info["digest_algorithm"]["algorithm"].native),
        signed_attrs=None if isinstance(signed_attrs, core.Void) else signed_attrs.contents,
        signature_algorithm=algorithm,
        signature=info["signature"].native,
    )


def _embedded_certificates(signed_data: _SignedData) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for der in signed_data.certificates:
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue  # an unparseable extra certificate only matters if it was needed
    return certs


def _verify_signed_data(signed_data: _SignedData, content: bytes,
                        trust: _Trust) -> VerifyResult:
    certs = _embedded_certificates(signed_data)
    results = [_verify_signer(info, signed_data.e_content_type, content, certs, trust)
               for info in signed_data.signers]
    # Several signers are rare (e.g. RSA and EC in parallel); one valid signature suffices,
    # otherwise the first signer's reason is the most useful to report.
    return next((r for r in results if r.valid), results[0])


def _verify_signer(
    info: _SignerInfo,
    e_content_type: str,
    content: bytes,
    certs: Sequence[x509.Certificate],
    trust: _Trust,
) -> VerifyResult:
    digest_name = info.digest_algorithm
    # Filled in step by step; every early return reports as much as is known by then.
    result = VerifyResult(valid=False, reason="", content=content, digest_algorithm=digest_name)
    signer = next((c for c in certs if identifies(info.sid, c)), None)
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

    digest_ok = True
    if info.signed_attrs is None:
        # RFC 5652 5.4: without signed attributes the signature covers the content itself.
        signed_bytes = content
    else:
        attrs = read_signed_attributes(info.signed_attrs)
        if attrs is None:
            return replace(result, reason="signed attributes are malformed")
        if attrs.get("content_type") != e_content_type:
            return replace(result, reason="content-type attribute missing or mismatched")
        result = replace(result, signing_time=_as_utc(attrs.get("signing_time")))
        # The signature is over the DER SET OF (tag 0x31), not the [0] IMPLICIT form sent;
        # the received content octets are reused so a re-encoding quirk cannot break it.
        raw = info.signed_attrs
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
    if signing_time is not None and signing_time > trust.now + _CLOCK_SKEW:
        return replace(result, reason="signing time is in the future")
    # RFC 8551 leaves the reference time to the verifier; the signer's claimed signingTime is
    # what the brief asks for, so a message signed while the certificate was valid stays valid
    # after expiry. It is only a claim: a stolen, expired key can backdate it.
    at = signing_time if signing_time is not None else trust.now
    if any(signer == cert for cert in trust.pinned_certificates(signer)):
        error, error_at = _check_pinned(signer, at)
        if error:
            return replace(result, reason=error, reason_at=error_at)
        return replace(result, valid=True, chain=(signer,), pinned=True)
    chain_error, chain, reason_at = _validate_chain(signer, certs, trust, at)
    if chain_error:
        return replace(result, reason=chain_error, reason_at=reason_at)
    return replace(result, valid=True, chain=tuple(chain))


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
    info: _SignerInfo,
    signer: x509.Certificate,
    data: bytes,
    hash_cls: type[hashes.HashAlgorithm],
) -> str:
    """Empty string when the signature verifies, else the reason."""
    algorithm = info.signature_algorithm
    try:
        kind = algorithm.signature_algo
    except ValueError:
        return f"signature algorithm {algorithm['algorithm'].native} is not accepted"
    signature = info.signature
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
    trust: _Trust,
    at: datetime.datetime,
) -> tuple[str, list[x509.Certificate], datetime.datetime | None]:
    """("", path, None) when the signer chains to an anchor and passes every check, else
    (reason, [], the date the reason refers to, if it has one). A path that passed before
    with the same inputs comes from the cache, if the caller keeps one."""
    anchors, crls, cache = trust.anchors, trust.crls, trust.chain_cache
    if cache is not None:
        cached = cache.get(signer, pool, anchors, crls, at, trust.now)
        if cached is not None:
            return "", list(cached), None
    reason, path, reason_at = _full_chain_validation(signer, pool, anchors, crls, at)
    if cache is not None and not reason:
        checked = path if not _is_anchor(path[-1], anchors) else path[:-1]
        cache.put(signer, pool, anchors, crls, tuple(path), checked)
    return reason, path, reason_at


def _full_chain_validation(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime.datetime,
) -> tuple[str, list[x509.Certificate], datetime.datetime | None]:
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
