"""The office's own keys: several per address, so a new key can be rolled out while mail
encrypted to the old one still arrives.

Private keys are sealed with the master key (crypto.at_rest) and bound to their row's
address, kind and fingerprint, so a sealed key copied into another row does not open there.
Every key that is not retired is tried for decryption, expired or not: partners keep
encrypting to a cached certificate for a while after it expired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.keydir.addresses import check_own_address, domain_of, normalise
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.material import (
    MAX_INPUT_BYTES,
    certificate_can_sign,
    certificate_emails,
    certificate_fingerprint,
    is_self_signed,
)
from gateway.keydir.models import KeyKind, OwnKey
from gateway.keydir.strength import certificate_signature_problem, describe_public

# A real PKI has one or two intermediates; more is a loop or a wrong file.
_MAX_CHAIN = 8
_PEM_PRIVATE = re.compile(
    rb"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class OwnKeyMaterial:
    """One own key, opened: what signing and decryption need."""

    id: int
    kind: KeyKind
    fingerprint: str
    address: str
    public: bytes  # DER certificate, or the armored OpenPGP public key
    # PKCS#8 DER (S/MIME) or an armored, unprotected OpenPGP secret key.
    private: bytes = field(repr=False)
    not_after: datetime | None
    # S/MIME: the intermediate certificates (PEM) to send along with signatures.
    chain: bytes = b""

    def __repr__(self) -> str:  # never print private key material
        return (f"OwnKeyMaterial(id={self.id}, {self.kind}, {self.fingerprint}, "
                f"{self.address}, not_after={self.not_after})")


def seal_context(address: str, kind: KeyKind, fingerprint: str) -> bytes:
    return b"\x00".join([b"xgate own key", address.encode(), kind.value.encode(),
                         fingerprint.encode()])


def _open(master_key: MasterKey, key: OwnKey) -> OwnKeyMaterial:
    private = open_sealed(master_key, key.private_sealed,
                          seal_context(key.address, key.kind, key.fingerprint))
    return OwnKeyMaterial(key.id, key.kind, key.fingerprint, key.address, key.public,
                          private, key.not_after, key.chain or b"")


def _candidates(address: str) -> list[str]:
    normalised = normalise(address)
    domain_key = "@" + domain_of(normalised)
    return [normalised] if normalised == domain_key else [normalised, domain_key]


def _active(session: Session, address: str, kind: KeyKind) -> list[OwnKey]:
    candidates = _candidates(address)
    keys = session.scalars(
        select(OwnKey).where(OwnKey.address.in_(candidates), OwnKey.kind == kind,
                             OwnKey.retired.is_(False))
        .order_by(OwnKey.not_before.desc(), OwnKey.id.desc())).all()
    # The address's own keys first, then the office-wide key of its domain; the sort is
    # stable, so each group stays newest first.
    return sorted(keys, key=lambda k: candidates.index(k.address))


def own_keys_for(session: Session, master_key: MasterKey, address: str,
                 kind: KeyKind) -> list[OwnKeyMaterial]:
    """Every key not retired for ``address``, then for its domain: all to try decrypting."""
    return [_open(master_key, k) for k in _active(session, address, kind)]


def signing_key_for(session: Session, master_key: MasterKey, address: str, kind: KeyKind,
                    now: datetime) -> OwnKeyMaterial | None:
    """The newest key valid at ``now`` that can sign: the address's own before its domain's."""
    for key in _active(session, address, kind):
        if key.can_sign and key.not_before <= now and (key.not_after is None
                                                       or key.not_after > now):
            return _open(master_key, key)
    return None


def list_own_keys(session: Session, address: str | None = None, *,
                  include_retired: bool = True) -> list[OwnKey]:
    query = select(OwnKey).order_by(OwnKey.address, OwnKey.id)
    if address is not None:
        query = query.where(OwnKey.address == normalise(address))
    if not include_retired:
        query = query.where(OwnKey.retired.is_(False))
    return list(session.scalars(query))


def get_own_key(session: Session, key_id: int) -> OwnKey:
    key = session.get(OwnKey, key_id)
    if key is None:
        raise NotFound(f"no own key {key_id}")
    return key


def retire_own_key(session: Session, key_id: int, *, actor: str, now: datetime) -> OwnKey:
    key = get_own_key(session, key_id)
    if key.retired:
        raise Conflict(f"own key {key_id} is retired already", "retired-already", id=key_id)
    key.retired, key.retired_at, key.retired_by = True, now, actor
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.OWN_KEY_RETIRED, detail=_facts(key))
    return key


# --- S/MIME ---------------------------------------------------------------------------------


def import_own_smime(session: Session, master_key: MasterKey, address: str, data: bytes, *,
                     password: bytes | None = None, actor: str, now: datetime) -> OwnKey:
    """Store a certificate with its private key: PKCS#12, or PEM with both in one blob."""
    address = check_own_address(address)
    if len(data) > MAX_INPUT_BYTES:
        raise KeyDirError(f"the input has {len(data)} bytes; at most {MAX_INPUT_BYTES} expected")
    key, certs = _read_key_and_certs(data, password)
    cert = _matching_certificate(key, certs)
    subject = cert.subject.rfc4514_string()
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        # crypto.smime decrypts with RSA key transport and crypto.smime_out signs with RSA
        # or EC; any other key could do neither here.
        raise KeyDirError(f"certificate {subject}: only RSA and EC keys can be used")
    strength = describe_public(cert.public_key(), own=True)
    if strength.refusal:
        raise KeyDirError(f"certificate {subject}: {strength.refusal}")
    problem = certificate_signature_problem(cert)
    if problem:
        raise KeyDirError(f"certificate {subject}: {problem}")
    _check_names(cert, address)
    private = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    chain = issuer_chain(cert, certs)
    return store_own_key(
        session, master_key, address=address, kind=KeyKind.SMIME,
        fingerprint=certificate_fingerprint(cert),
        public=cert.public_bytes(serialization.Encoding.DER), private=private,
        chain=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain) or None,
        subject=subject, algorithm=strength.algorithm, not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc, can_sign=certificate_can_sign(cert), actor=actor,
        now=now, how="imported")


def _read_key_and_certs(data: bytes, password: bytes | None
                        ) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    if b"-----BEGIN" not in data:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            hint = "wrong password" if password is not None else "no password given"
            raise KeyDirError(f"cannot read the PKCS#12 file ({hint}, or not PKCS#12)"
                              ) from None
        if key is None or cert is None:
            raise KeyDirError("the PKCS#12 file must hold a certificate and its private key")
        return key, [cert, *extra]
    blocks = _PEM_PRIVATE.findall(data)
    match = _PEM_PRIVATE.search(data)
    if match is None:
        raise KeyDirError("no PEM private key found (give the certificate and its key)")
    if len(blocks) > 1:
        raise KeyDirError("more than one private key given; import one key at a time")
    try:
        key = serialization.load_pem_private_key(match.group(0), password)
    except TypeError:
        # cryptography says TypeError both for a missing and for a superfluous password.
        raise KeyDirError("the private key is encrypted: give its password" if password is None
                          else "the private key is not encrypted: give no password") from None
    except ValueError:
        raise KeyDirError("cannot read the private key (wrong password, or not PEM)") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyDirError("no readable PEM certificate found") from None
    return key, certs


def issuer_chain(cert: x509.Certificate,
                 certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates among ``certs`` that issued ``cert``, its issuer's issuer and so
    on, up to but without a self-signed root: the intermediates a partner needs, when it
    trusts the root. Certificates that issue none of these are left out."""
    chain: list[x509.Certificate] = []
    tip = cert
    while len(chain) < _MAX_CHAIN:
        issuer = next((c for c in certs if c != tip and c not in chain
                       and _issued(tip, c)), None)
        if issuer is None or is_self_signed(issuer):
            break
        chain.append(issuer)
        tip = issuer
    return chain


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _matching_certificate(key: PrivateKeyTypes, certs: list[x509.Certificate]) -> x509.Certificate:
    for cert in certs:
        if cert.public_key() == key.public_key():
            return cert
    raise KeyDirError("the private key belongs to none of the certificates given")


def _check_names(cert: x509.Certificate, address: str) -> None:
    emails = certificate_emails(cert)
    if address.startswith("@"):
        ok = any(domain_of(e) == address[1:] for e in emails)
    else:
        ok = address in emails
    if not ok:
        # Partners' mail clients match the certificate to the address they write to; a
        # certificate for another address would never be used, or be rejected.
        named = ", ".join(emails) or "no e-mail address"
        raise KeyDirError(f"the certificate names {named}, not {address}")


# --- storage --------------------------------------------------------------------------------


def store_own_key(session: Session, master_key: MasterKey, *, address: str, kind: KeyKind,
                  fingerprint: str, public: bytes, private: bytes, subject: str,
                  algorithm: str, not_before: datetime, not_after: datetime | None,
                  can_sign: bool, actor: str, now: datetime, how: str,
                  chain: bytes | None = None) -> OwnKey:
    exists = session.scalars(select(OwnKey.id).where(
        OwnKey.address == address, OwnKey.kind == kind, OwnKey.fingerprint == fingerprint,
    )).first()
    if exists is not None:
        raise Conflict(f"this key is stored for {address} already (own key {exists})")
    key = OwnKey(address=address, kind=kind, fingerprint=fingerprint, public=public,
                 chain=chain, private_sealed=seal(master_key, private,
                                     seal_context(address, kind, fingerprint)),
                 subject=subject, algorithm=algorithm, not_before=not_before,
                 not_after=not_after, can_sign=can_sign, created_at=now, created_by=actor,
                 retired=False)
    session.add(key)
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.OWN_KEY_ADDED, detail={**_facts(key),
                                                                       "how": how})
    return key


def _facts(key: OwnKey) -> dict[str, Any]:
    return {"own_key_id": key.id, "address": key.address, "kind": str(key.kind),
            "fingerprint": key.fingerprint, "algorithm": key.algorithm,
            "not_after": key.not_after.isoformat() if key.not_after else None}

