"""Partner organisations, the domains and addresses that are theirs, and their policies.

Data functions: they flush and record audit entries but never commit; the caller's
``session_scope`` owns the transaction, so a change and its audit entry commit together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.keydir.addresses import check_pattern, domain_of, normalise
from gateway.keydir.errors import Conflict, KeyDirError, NotFound
from gateway.keydir.models import InvalidSignature, Partner, PartnerAddress
from gateway.queue.held import requeue_held_for
from gateway.settings import OutboundPolicy

MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class PartnerPolicy:
    """What the pipeline needs to know about the partner an address belongs to."""

    id: int
    name: str
    outbound_policy: OutboundPolicy
    smime_gcm: bool
    openpgp_inline: bool
    inbound_require_encryption: bool
    inbound_require_signature: bool
    # Quarantine (the default) or deliver with a visible warning.
    inbound_invalid_signature: InvalidSignature
    non_sensitive: bool
    # The partner pattern that matched: the address itself, or its domain.
    pattern: str


# Built once: the columns PartnerPolicy needs, not the ORM entities. Every inbound message
# asks, and loading Partner objects into the session cost twice the query's round trip.
_PARTNER_FOR = (
    select(Partner.id, Partner.name, Partner.outbound_policy, Partner.smime_gcm,
           Partner.openpgp_inline, Partner.inbound_require_encryption,
           Partner.inbound_require_signature, Partner.inbound_invalid_signature,
           Partner.non_sensitive, PartnerAddress.pattern)
    .join(PartnerAddress)
    .where(PartnerAddress.pattern.in_(bindparam("candidates", expanding=True))))


def partner_for(session: Session, address: str) -> PartnerPolicy | None:
    """The partner ``address`` belongs to: an exact address pattern beats a domain pattern.

    Only the address's own domain matches; "x@sub.stelle.example" is not a partner of
    "stelle.example". Subdomains are often run by someone else (a hosting provider, another
    authority), and a policy must not reach further than the admin wrote it.

    Not cached: a partner's change must hold for the next message, whichever process made
    it, and without a change counter in the database, reading whether anything changed
    costs the same round trip as this one indexed query.
    """
    normalised = normalise(address)
    if "@" not in normalised:
        return None
    candidates = (normalised, domain_of(normalised))
    rows = session.execute(_PARTNER_FOR, {"candidates": list(candidates)}).all()
    if not rows:
        return None
    row = min(rows, key=lambda row: candidates.index(row.pattern))
    return PartnerPolicy(
        id=row.id, name=row.name, outbound_policy=row.outbound_policy,
        smime_gcm=row.smime_gcm, openpgp_inline=row.openpgp_inline,
        inbound_require_encryption=row.inbound_require_encryption,
        inbound_require_signature=row.inbound_require_signature,
        inbound_invalid_signature=row.inbound_invalid_signature,
        non_sensitive=row.non_sensitive, pattern=row.pattern)


def find_partner(session: Session, name: str) -> Partner | None:
    return session.scalars(select(Partner).where(Partner.name == name.strip())).one_or_none()


def get_partner(session: Session, name: str) -> Partner:
    partner = find_partner(session, name)
    if partner is None:
        raise NotFound(f"no partner {name!r}")
    return partner


def get_partner_by_id(session: Session, partner_id: int) -> Partner:
    """For the web console, whose URLs carry ids rather than names."""
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"no partner with id {partner_id}")
    return partner


def require_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns given, refused if there are none: a partner without a domain or an
    address would never match a message, and its policy would silently apply to nobody."""
    given = [p for p in patterns if p.strip()]
    if not given:
        raise KeyDirError("give at least one domain or address: a partner without any would "
                          "never match a message", "no-pattern")
    return given


def list_partners(session: Session) -> list[Partner]:
    return list(session.scalars(select(Partner).order_by(Partner.name)))


def add_partner(session: Session, name: str, *, actor: str, now: datetime,
                patterns: Iterable[str] = (),
                outbound_policy: OutboundPolicy = OutboundPolicy.EITHER,
                smime_gcm: bool = False, openpgp_inline: bool = False,
                inbound_require_encryption: bool = False,
                inbound_require_signature: bool = False,
                inbound_invalid_signature: InvalidSignature = InvalidSignature.QUARANTINE,
                non_sensitive: bool = False, note: str = "") -> Partner:
    name = _check_name(name)
    if find_partner(session, name) is not None:
        raise Conflict(f"partner {name!r} exists already", "partner-exists", name=name)
    _check_plaintext(name, outbound_policy, non_sensitive)
    # Checked before anything is written, so a refused pattern leaves nothing behind.
    wanted = [_free_pattern(session, p) for p in patterns]
    partner = Partner(
        name=name, outbound_policy=outbound_policy, smime_gcm=smime_gcm,
        openpgp_inline=openpgp_inline,
        inbound_require_encryption=inbound_require_encryption,
        inbound_require_signature=inbound_require_signature,
        inbound_invalid_signature=InvalidSignature(inbound_invalid_signature),
        non_sensitive=non_sensitive, note=note, created_at=now, created_by=actor,
        updated_at=now, updated_by=actor)
    session.add(partner)
    session.flush()
    added = [_add_pattern(session, partner, p) for p in dict.fromkeys(wanted)]
    audit.record(session, actor=actor, action=AuditAction.PARTNER_ADDED, detail={
        "partner": name, "patterns": added, **_policy_facts(partner)})
    _release_waiting(session, added, actor, now, f"partner {name!r} added")
    return partner


def update_partner(session: Session, name: str, *, actor: str, now: datetime,
                   new_name: str | None = None,
                   outbound_policy: OutboundPolicy | None = None,
                   smime_gcm: bool | None = None,
                   openpgp_inline: bool | None = None,
                   inbound_require_encryption: bool | None = None,
                   inbound_require_signature: bool | None = None,
                   inbound_invalid_signature: InvalidSignature | None = None,
                   non_sensitive: bool | None = None,
                   note: str | None = None) -> Partner:
    """Change the given fields (None leaves a field as it is)."""
    partner = get_partner(session, name)
    before = {"name": partner.name, **_policy_facts(partner), "note": partner.note}
    if new_name is not None and new_name.strip() != partner.name:
        new_name = _check_name(new_name)
        if find_partner(session, new_name) is not None:
            raise Conflict(f"partner {new_name!r} exists already", "partner-exists",
                           name=new_name)
        partner.name = new_name
    final_policy = outbound_policy if outbound_policy is not None else partner.outbound_policy
    final_non_sensitive = non_sensitive if non_sensitive is not None else partner.non_sensitive
    _check_plaintext(partner.name, final_policy, final_non_sensitive)
    partner.outbound_policy = final_policy
    partner.non_sensitive = final_non_sensitive
    if smime_gcm is not None:
        partner.smime_gcm = smime_gcm
    if openpgp_inline is not None:
        partner.openpgp_inline = openpgp_inline
    if inbound_require_encryption is not None:
        partner.inbound_require_encryption = inbound_require_encryption
    if inbound_require_signature is not None:
        partner.inbound_require_signature = inbound_require_signature
    if inbound_invalid_signature is not None:
        partner.inbound_invalid_signature = InvalidSignature(inbound_invalid_signature)
    if note is not None:
        partner.note = note
    after = {"name": partner.name, **_policy_facts(partner), "note": partner.note}
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if changes:
        partner.updated_at = now
        partner.updated_by = actor
        session.flush()
        audit.record(session, actor=actor, action=AuditAction.PARTNER_CHANGED,
                     detail={"partner": partner.name, "changes": changes})
        if set(changes) - {"name", "note"}:
            _release_waiting(session, [p.pattern for p in partner.patterns], actor, now,
                             f"partner {partner.name!r} changed")
    return partner


def delete_partner(session: Session, name: str, *, actor: str) -> None:
    """Remove a partner and its patterns. Its keys stay, without a partner, for the record."""
    partner = get_partner(session, name)
    patterns = [p.pattern for p in partner.patterns]
    session.delete(partner)
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.PARTNER_REMOVED,
                 detail={"partner": partner.name, "patterns": patterns})


def add_partner_pattern(session: Session, name: str, pattern: str, *, actor: str,
                        now: datetime) -> str:
    partner = get_partner(session, name)
    added = _add_pattern(session, partner, pattern)
    _touch(partner, actor, now)
    audit.record(session, actor=actor, action=AuditAction.PARTNER_ADDRESS_ADDED,
                 detail={"partner": partner.name, "pattern": added})
    _release_waiting(session, [added], actor, now, f"{added} added to partner {partner.name!r}")
    return added


def remove_partner_pattern(session: Session, name: str, pattern: str, *, actor: str,
                           now: datetime) -> None:
    partner = get_partner(session, name)
    wanted = normalise(pattern)
    match = next((p for p in partner.patterns if p.pattern == wanted), None)
    if match is None:
        raise NotFound(f"partner {partner.name!r} has no address or domain {wanted!r}")
    partner.patterns.remove(match)
    _touch(partner, actor, now)
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.PARTNER_ADDRESS_REMOVED,
                 detail={"partner": partner.name, "pattern": wanted})
    _release_waiting(session, [wanted], actor, now,
                     f"{wanted} removed from partner {partner.name!r}")


def replace_partner_patterns(session: Session, name: str, wanted: Iterable[str], *,
                             actor: str, now: datetime) -> None:
    """Make ``wanted`` the partner's complete set of domains and addresses (each change
    audited and re-checking held mail as add_partner_pattern and remove_partner_pattern do)."""
    normalised = [normalise(p) for p in require_patterns(wanted)]
    current = {p.pattern for p in get_partner(session, name).patterns}
    # Removed first, so a pattern can move between spellings without a conflict.
    for pattern in sorted(current - set(normalised)):
        remove_partner_pattern(session, name, pattern, actor=actor, now=now)
    for pattern in dict.fromkeys(normalised):
        if pattern not in current:
            add_partner_pattern(session, name, pattern, actor=actor, now=now)


def _release_waiting(session: Session, patterns: Iterable[str], actor: str, now: datetime,
                     why: str) -> None:
    """Re-queue the messages held for a missing key to these addresses and domains: under
    the changed policy they may go now, as after a key's approval (gateway.queue.held)."""
    listed = list(patterns)
    requeue_held_for(session, [p for p in listed if "@" in p], actor=actor, now=now, why=why,
                     domains=[p for p in listed if "@" not in p])


def _free_pattern(session: Session, text: str) -> str:
    pattern = check_pattern(text)
    owner = session.scalars(
        select(Partner).join(PartnerAddress).where(PartnerAddress.pattern == pattern)
    ).one_or_none()
    if owner is not None:
        # One address, one policy: two partners claiming it would make the lookup arbitrary.
        raise Conflict(f"{pattern} belongs to partner {owner.name!r} already",
                       "pattern-taken", pattern=pattern, partner=owner.name)
    return pattern


def _add_pattern(session: Session, partner: Partner, text: str) -> str:
    pattern = _free_pattern(session, text)
    partner.patterns.append(PartnerAddress(pattern=pattern))
    session.flush()
    return pattern


def _touch(partner: Partner, actor: str, now: datetime) -> None:
    partner.updated_at = now
    partner.updated_by = actor


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise KeyDirError(f"partner name must be 1 to {MAX_NAME_LENGTH} characters",
                          "name-length", limit=MAX_NAME_LENGTH)
    if any(not ch.isprintable() for ch in name):
        raise KeyDirError("partner name must not contain control characters", "name-control")
    return name


def _check_plaintext(name: str, policy: OutboundPolicy, non_sensitive: bool) -> None:
    if policy is OutboundPolicy.PLAINTEXT and not non_sensitive:
        raise KeyDirError(
            f"partner {name!r}: outbound policy plaintext is only allowed for a partner "
            "marked non-sensitive", "plaintext-sensitive")


def _policy_facts(partner: Partner) -> dict[str, Any]:
    return {
        "outbound_policy": str(partner.outbound_policy),
        "smime_gcm": partner.smime_gcm,
        "openpgp_inline": partner.openpgp_inline,
        "inbound_require_encryption": partner.inbound_require_encryption,
        "inbound_require_signature": partner.inbound_require_signature,
        "inbound_invalid_signature": str(partner.inbound_invalid_signature),
        "non_sensitive": partner.non_sensitive,
    }
