"""Plain-data views of the directory's rows, shared by the CLI's ``--json`` and the API.

Call these inside the session that loaded the rows (they follow relationships). Private key
material has no view.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.keydir.expiry import ExpiringKey
from gateway.keydir.keys import ImportedKey
from gateway.keydir.material import is_self_signed_der
from gateway.keydir.models import KeyKind, KeyStatus, OwnKey, Partner, PartnerKey


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def partner_view(partner: Partner) -> dict[str, Any]:
    return {
        "name": partner.name,
        "patterns": [p.pattern for p in partner.patterns],
        "outbound_policy": partner.outbound_policy.value,
        "smime_gcm": partner.smime_gcm,
        "openpgp_inline": partner.openpgp_inline,
        "inbound_require_encryption": partner.inbound_require_encryption,
        "inbound_require_signature": partner.inbound_require_signature,
        "inbound_invalid_signature": partner.inbound_invalid_signature.value,
        "non_sensitive": partner.non_sensitive,
        "note": partner.note,
        "created_at": _time(partner.created_at), "created_by": partner.created_by,
        "updated_at": _time(partner.updated_at), "updated_by": partner.updated_by,
    }


def self_signed(key: PartnerKey) -> bool:
    """An S/MIME certificate no CA issued: usable only pinned, after an admin's approval."""
    return (key.kind is KeyKind.SMIME and key.issuer == key.subject
            and is_self_signed_der(key.data))


def trust_note(key: PartnerKey) -> str | None:
    """How a certificate's signatures come to count: through a CA, or pinned."""
    if key.kind is not KeyKind.SMIME:
        return None
    if not self_signed(key):
        return "issued by a CA (signatures need a chain to crypto.trust_anchors_file)"
    if key.status is KeyStatus.APPROVED:
        return "self-signed, pinned (exactly this certificate is trusted)"
    if key.status is KeyStatus.PENDING:
        return "self-signed, not pinned until approved (compare the fingerprint by phone)"
    return "self-signed, not trusted"


def spoken_fingerprint(kind: KeyKind, fingerprint: str) -> str:
    """The fingerprint as the partner's software shows it, to read out on the phone:
    SHA-256 in colon-separated pairs (S/MIME), groups of four (OpenPGP)."""
    text = fingerprint.upper()
    if kind is KeyKind.SMIME:
        return ":".join(text[i:i + 2] for i in range(0, len(text), 2))
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def key_view(key: PartnerKey, *, with_data: bool = False) -> dict[str, Any]:
    pinned_kind = self_signed(key)
    view: dict[str, Any] = {
        "id": key.id,
        "kind": key.kind.value,
        "fingerprint": key.fingerprint,
        "status": key.status.value,
        "self_signed": pinned_kind,
        "pinned": pinned_kind and key.status is KeyStatus.APPROVED,
        "trust": trust_note(key),
        "partner": key.partner.name if key.partner else None,
        "addresses": key.address_list,
        "subject": key.subject,
        "issuer": key.issuer,
        "algorithm": key.algorithm,
        "can_encrypt": key.can_encrypt,
        "warning": key.warning,
        "not_before": _time(key.not_before),
        "not_after": _time(key.not_after),
        "source": key.source.value,
        "source_detail": key.source_detail,
        "added_by": key.added_by,
        "added_at": _time(key.added_at),
        "decided_by": key.decided_by,
        "decided_at": _time(key.decided_at),
    }
    if with_data:
        view["data"] = public_text(key.kind, key.data)
    return view


def imported_view(imported: ImportedKey) -> dict[str, Any]:
    return {**key_view(imported.key), "outcome": imported.outcome.value}


def own_key_view(key: OwnKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "address": key.address,
        "kind": key.kind.value,
        "fingerprint": key.fingerprint,
        "subject": key.subject,
        "algorithm": key.algorithm,
        "can_sign": key.can_sign,
        # Intermediate certificates kept with it (sent with signatures and the export).
        "intermediates": (key.chain or b"").count(b"-----BEGIN CERTIFICATE-----"),
        "not_before": _time(key.not_before),
        "not_after": _time(key.not_after),
        "created_at": _time(key.created_at), "created_by": key.created_by,
        "retired": key.retired,
        "retired_at": _time(key.retired_at), "retired_by": key.retired_by,
    }


def expiring_view(key: ExpiringKey) -> dict[str, Any]:
    return {
        "owner": key.owner, "id": key.id, "kind": key.kind.value,
        "fingerprint": key.fingerprint, "holder": key.holder,
        "addresses": list(key.addresses), "not_after": _time(key.not_after),
        "days_left": key.days_left,
    }


def public_text(kind: KeyKind, data: bytes) -> str:
    """A certificate as PEM, an armored OpenPGP key as it is (binary ones in base64)."""
    if kind is KeyKind.SMIME:
        cert = x509.load_der_x509_certificate(data)
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")
