"""Partners' certificates and OpenPGP keys: import, harvest, decisions, and the lookups the
pipeline makes.

Only *approved* keys receive encrypted mail. A key harvested from a validly signed message is
*pending* until an admin approves it: a valid signature proves the sender holds the key, not
that the key is the one the partner wants mail encrypted to. Every change is audited in the
caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, selectinload

from gateway import audit
from gateway.audit import AuditAction
from gateway.keydir.addresses import normalise
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.material import ParsedKey, is_self_signed_der, parse_partner_material
from gateway.keydir.models import KeyKind as KeyKind  # re-exported for the pipeline
from gateway.keydir.models import KeySource as KeySource
from gateway.keydir.models import KeyStatus as KeyStatus
from gateway.keydir.models import Partner, PartnerKey, PartnerKeyAddress
from gateway.keydir.partners import get_partner, partner_for
from gateway.queue.held import requeue_held_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartnerKeyMaterial:
    """A partner key as the pipeline uses it (public material only)."""

    id: int
    kind: KeyKind
    fingerprint: str
    data: bytes  # DER certificate, or the OpenPGP public key as imported
    not_after: datetime | None


class ImportOutcome(StrEnum):
    ADDED = "added"
    # Known already and pending (or rejected); the importing admin approved it now.
    APPROVED = "approved"
    # A known OpenPGP key in a newer copy (e.g. its expiry extended); status unchanged.
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ImportedKey:
    key: PartnerKey
    outcome: ImportOutcome


def _material(key: PartnerKey) -> PartnerKeyMaterial:
    return PartnerKeyMaterial(key.id, key.kind, key.fingerprint, key.data, key.not_after)


def _naming(address: str, kind: KeyKind) -> Select[PartnerKey]:
    return (select(PartnerKey).join(PartnerKeyAddress)
            .where(PartnerKeyAddress.address == normalise(address), PartnerKey.kind == kind)
            .order_by(PartnerKey.not_before.desc(), PartnerKey.id.desc()))


def usable_partner_keys(session: Session, address: str, kind: KeyKind,
                        now: datetime) -> list[PartnerKeyMaterial]:
    """Approved keys naming ``address`` that can encrypt and are valid at ``now``, newest
    first."""
    query = _naming(address, kind).where(
        PartnerKey.status == KeyStatus.APPROVED, PartnerKey.can_encrypt.is_(True),
        PartnerKey.not_before <= now,
        or_(PartnerKey.not_after.is_(None), PartnerKey.not_after > now))
    return [_material(k) for k in session.scalars(query)]


def verification_keys(session: Session, address: str, kind: KeyKind) -> list[PartnerKeyMaterial]:
    """Approved or pending keys naming ``address``, newest first.

    Only for checking signatures: a pending key can prove that a message is signed by whoever
    holds it, but never receives encrypted mail. Validity periods are the verifier's to judge
    against the signature's time.
    """
    query = _naming(address, kind).where(
        PartnerKey.status.in_((KeyStatus.APPROVED, KeyStatus.PENDING)))
    return [_material(k) for k in session.scalars(query)]


def pinned_certificates(session: Session, address: str) -> list[bytes]:
    """The approved self-signed S/MIME certificates naming ``address`` (DER), newest first.

    No CA vouches for such a certificate: an admin approved exactly this one, having
    compared its fingerprint with the partner by phone. A signature made with it is valid
    for this address (crypto.smime_verify's ``pinned``); it never vouches for another
    certificate. A pending one proves nothing.
    """
    query = _naming(address, KeyKind.SMIME).where(
        PartnerKey.status == KeyStatus.APPROVED, PartnerKey.issuer == PartnerKey.subject)
    return [k.data for k in session.scalars(query) if is_self_signed_der(k.data)]


def find_key(session: Session, kind: KeyKind, fingerprint: str) -> PartnerKey | None:
    wanted = fingerprint.upper() if kind is KeyKind.OPENPGP else fingerprint.lower()
    return session.scalars(select(PartnerKey).where(
        PartnerKey.kind == kind, PartnerKey.fingerprint == wanted)).one_or_none()


def get_key(session: Session, key_id: int) -> PartnerKey:
    key = session.get(PartnerKey, key_id)
    if key is None:
        raise NotFound(f"no partner key {key_id}")
    return key


def list_keys(session: Session, status: KeyStatus | None = None,
              partner: str | None = None) -> list[PartnerKey]:
    query = (select(PartnerKey).options(selectinload(PartnerKey.addresses),
                                        selectinload(PartnerKey.partner))
             .order_by(PartnerKey.id))
    if status is not None:
        query = query.where(PartnerKey.status == status)
    if partner is not None:
        query = query.where(PartnerKey.partner_id == get_partner(session, partner).id)
    return list(session.scalars(query))


def import_partner_keys(session: Session, data: bytes, *, actor: str, source: KeySource,
                        source_detail: str, partner: str | None = None, approve: bool,
                        now: datetime, require_address: str | None = None) -> list[ImportedKey]:
    """Store every key in ``data`` (see material.parse_partner_material), all or none.

    ``partner`` names the partner record to attach the keys to; without it, a key goes to
    the partner whose domain or address matches the first address it names, if any.
    ``approve`` (an admin importing a key they checked) stores the keys approved, and
    approves a known pending or rejected one. Known approved keys keep their status; revoked
    keys are never revived by an import. A newer copy of a known OpenPGP key replaces the
    stored one (see ``_refresh``). ``require_address`` (for WKD lookups) refuses keys
    that do not name that address: a domain's key directory can publish anyone's key.
    """
    if source is KeySource.HARVEST:
        raise KeyDirError("harvested keys go through harvest(), which keeps them pending")
    parsed = parse_partner_material(data)
    if require_address is not None:
        wanted = normalise(require_address)
        strangers = [p.fingerprint for p in parsed if wanted not in p.addresses]
        if strangers:
            raise KeyDirError(f"key {strangers[0]} does not name {wanted}")
    owner = get_partner(session, partner) if partner is not None else None
    results = []
    for item in parsed:
        existing = find_key(session, item.kind, item.fingerprint)
        if existing is None:
            status = KeyStatus.APPROVED if approve else KeyStatus.PENDING
            key = _store(session, item, _partner_id(session, owner, item.addresses), status,
                         source, source_detail, actor, now)
            results.append(ImportedKey(key, ImportOutcome.ADDED))
            continue
        if owner is not None and existing.partner_id is None:
            # An admin naming the partner of a key harvested before the partner existed.
            existing.partner = owner
            session.flush()
            audit.record(session, actor=actor, action=AuditAction.KEY_ASSIGNED,
                         detail={**_facts(existing), "partner": owner.name})
        refreshed = _refresh(session, existing, item, actor)
        if approve and existing.status in (KeyStatus.PENDING, KeyStatus.REJECTED):
            _decide(session, existing, KeyStatus.APPROVED, actor, now)
            results.append(ImportedKey(existing, ImportOutcome.APPROVED))
        else:
            results.append(ImportedKey(existing, ImportOutcome.UPDATED if refreshed
                                       else ImportOutcome.UNCHANGED))
    return results


def _refresh(session: Session, key: PartnerKey, item: ParsedKey, actor: str) -> bool:
    """Take a newer copy of a known OpenPGP key: its owner extends the expiry or adds a
    subkey under the same fingerprint, and without this the directory would keep the old
    copy forever. Addresses are never added this way (that would widen what was approved),
    only dropped when the new copy no longer names them."""
    if key.kind is not KeyKind.OPENPGP or key.data == item.data:
        return False
    before = key.not_after
    kept = [a for a in key.addresses if a.address in item.addresses]
    if not kept:
        raise KeyDirError(f"the new copy of key {key.fingerprint} names none of its "
                          f"addresses ({', '.join(key.address_list)}); not taken")
    key.data, key.subject, key.not_after = item.data, item.subject, item.not_after
    key.can_encrypt, key.warning, key.algorithm = item.can_encrypt, item.warning, item.algorithm
    key.addresses = kept
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.KEY_REFRESHED, detail={
        **_facts(key), "not_after": [_iso(before), _iso(key.not_after)],
        "addresses": key.address_list})
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def harvest(session: Session, *, kind: KeyKind, data: bytes, addresses: Sequence[str],
            queue_id: str, actor: str, now: datetime) -> PartnerKey | None:
    """Store a key found in a validly signed inbound message as pending.

    ``addresses`` are the sender's (the first decides the partner). Returns None, changing
    nothing, if the key is known already (whatever its status: a harvest never demotes an
    approved key nor revives a rejected one) or if it cannot be accepted; the latter is
    logged as a warning, because harvesting is opportunistic and must never stop a message.
    """
    try:
        parsed = parse_partner_material(data)
    except KeyDirError as exc:
        log.warning("key from message %s not harvested: %s", queue_id, exc,
                    extra={"queue_id": queue_id})
        return None
    if len(parsed) != 1 or parsed[0].kind is not kind:
        log.warning("key from message %s not harvested: expected one %s key", queue_id, kind,
                    extra={"queue_id": queue_id})
        return None
    item = parsed[0]
    if find_key(session, item.kind, item.fingerprint) is not None:
        return None
    senders = [normalise(a) for a in addresses]
    if not senders or not set(senders) & set(item.addresses):
        # A signer may carry anyone's certificate; only a key naming the sender is theirs.
        log.warning("key %s from message %s not harvested: it names %s, not the sender",
                    item.fingerprint, queue_id, ", ".join(item.addresses),
                    extra={"queue_id": queue_id})
        return None
    partner = partner_for(session, senders[0])
    return _store(session, item, partner.id if partner else None, KeyStatus.PENDING,
                  KeySource.HARVEST, queue_id, actor, now, queue_id=queue_id)


def approve_key(session: Session, key_id: int, actor: str, now: datetime) -> PartnerKey:
    key = get_key(session, key_id)
    if key.status is KeyStatus.APPROVED:
        raise Conflict(f"key {key_id} is approved already", "approved-already", id=key_id)
    if key.status is KeyStatus.REVOKED:
        # Revocation means "never again"; a key that is good after all is imported anew by
        # its owner as a new key, not resurrected.
        raise Conflict(f"key {key_id} is revoked and stays so", "revoked-stays", id=key_id)
    _decide(session, key, KeyStatus.APPROVED, actor, now)
    return key


def reject_key(session: Session, key_id: int, actor: str, now: datetime) -> PartnerKey:
    key = get_key(session, key_id)
    if key.status is not KeyStatus.PENDING:
        raise Conflict(f"key {key_id} is {key.status}; only a pending key can be rejected "
                       "(revoke an approved one)", "only-pending", id=key_id)
    _decide(session, key, KeyStatus.REJECTED, actor, now)
    return key


def revoke_key(session: Session, key_id: int, actor: str, now: datetime) -> PartnerKey:
    key = get_key(session, key_id)
    if key.status is KeyStatus.REVOKED:
        raise Conflict(f"key {key_id} is revoked already", "revoked-already", id=key_id)
    _decide(session, key, KeyStatus.REVOKED, actor, now)
    return key


# A pending key is never decided into: it is where keys start.
_DECIDED = {KeyStatus.APPROVED: AuditAction.KEY_APPROVED,
            KeyStatus.REJECTED: AuditAction.KEY_REJECTED,
            KeyStatus.REVOKED: AuditAction.KEY_REVOKED}


def _decide(session: Session, key: PartnerKey, status: KeyStatus, actor: str,
            now: datetime) -> None:
    before = key.status
    key.status, key.decided_by, key.decided_at = status, actor, now
    session.flush()
    audit.record(session, actor=actor, action=_DECIDED[status], detail={
        **_facts(key), "from": str(before)})
    if status is KeyStatus.APPROVED:
        _release_waiting(session, key, actor, now)


def _release_waiting(session: Session, key: PartnerKey, actor: str, now: datetime) -> None:
    requeue_held_for(session, key.address_list, actor=actor, now=now,
                     why=f"{key.kind} key {key.fingerprint} approved")


def _partner_id(session: Session, owner: Partner | None,
                addresses: tuple[str, ...]) -> int | None:
    if owner is not None:
        return owner.id
    partner = partner_for(session, addresses[0])
    return partner.id if partner else None


def _store(session: Session, item: ParsedKey, partner_id: int | None, status: KeyStatus,
           source: KeySource, source_detail: str, actor: str, now: datetime, *,
           queue_id: str | None = None) -> PartnerKey:
    key = PartnerKey(
        partner_id=partner_id, kind=item.kind, fingerprint=item.fingerprint, data=item.data,
        subject=item.subject, issuer=item.issuer, algorithm=item.algorithm,
        can_encrypt=item.can_encrypt, warning=item.warning, not_before=item.not_before,
        not_after=item.not_after, status=status, source=source, source_detail=source_detail,
        added_by=actor, added_at=now,
        decided_by=actor if status is KeyStatus.APPROVED else None,
        decided_at=now if status is KeyStatus.APPROVED else None,
        addresses=[PartnerKeyAddress(address=a) for a in item.addresses])
    session.add(key)
    session.flush()
    action = AuditAction.KEY_HARVESTED if source is KeySource.HARVEST else AuditAction.KEY_ADDED
    audit.record(session, actor=actor, action=action, queue_id=queue_id, detail={
        **_facts(key), "source": str(source), "source_detail": source_detail,
        "addresses": list(item.addresses), "warning": item.warning})
    if status is KeyStatus.APPROVED:
        _release_waiting(session, key, actor, now)
    return key


def _facts(key: PartnerKey) -> dict[str, Any]:
    return {"key_id": key.id, "kind": str(key.kind), "fingerprint": key.fingerprint,
            "status": str(key.status), "partner_id": key.partner_id}
