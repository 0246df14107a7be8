"""What protection each recipient of an outbound message gets, and why.

One function decides it for the pipeline's stages and for ``xgate policy explain`` alike, so
the dry run cannot drift from what really happens. It fails closed: where encryption is
required and no usable key exists the answer is HOLD, naming the missing key; plaintext goes
out only to partners explicitly marked for it.

"either" and "either-or-portal" walk a ladder, one rung after the other, and the reasons say
of each rung whether it was taken and why not: S/MIME, OpenPGP, then (only for
"either-or-portal") the citizen portal's pickup, then hold. The portal rung needs the portal
enabled with a public address for the link; otherwise the ladder goes on to hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from sqlalchemy.orm import Session

from crypto.smime_out import recipient_problem
from gateway.delivery.routes import LocalRoute, Route
from gateway.keydir.keys import KeyKind, PartnerKeyMaterial, usable_partner_keys
from gateway.keydir.partners import PartnerPolicy, partner_for
from gateway.queue.held import KEY_HOLD_PREFIX
from gateway.settings import OutboundPolicy, RelayRoute, Settings


class Protection(StrEnum):
    INSIDE = "inside"  # a shared mailbox or the office's internal mail server
    SMIME = "smime"
    OPENPGP = "openpgp"
    PLAINTEXT = "plaintext"
    # No mail with content: the message waits in the citizen portal for pickup, the citizen
    # gets a notice with the link (gateway.delivery.portal_pickup).
    PORTAL = "portal"
    HOLD = "hold"


@dataclass(frozen=True)
class RecipientPlan:
    recipient: str
    protection: Protection
    reasons: tuple[str, ...]
    policy: OutboundPolicy | None = None
    partner: str | None = None
    keys: tuple[PartnerKeyMaterial, ...] = ()
    # S/MIME: AES-256-GCM (AuthEnvelopedData) only where the partner can read it.
    gcm: bool = False
    # OpenPGP: inline PGP where the message is plain text (the partner's client needs it).
    inline: bool = False
    # For HOLD: the key that would let the message go.
    missing: str | None = None


def _usable_smime(keys: Sequence[PartnerKeyMaterial]) -> tuple[list[PartnerKeyMaterial],
                                                                list[str]]:
    usable, problems = [], []
    for key in keys:
        problem = recipient_problem(x509.load_der_x509_certificate(key.data))
        if problem is None:
            usable.append(key)
        else:
            problems.append(f"certificate {key.fingerprint[:16]} unusable: {problem}")
    return usable, problems


def plan_recipient(session: Session, settings: Settings, address: str, route: Route,
                   now: datetime) -> RecipientPlan:
    if isinstance(route, LocalRoute):
        return RecipientPlan(address, Protection.INSIDE,
                             (f"filed in the shared mailbox {route.mailbox_address}",))
    if isinstance(route, RelayRoute) and route.internal:
        return RecipientPlan(address, Protection.INSIDE,
                             (f"relayed to the office's internal mail server {route.host}",))
    partner = partner_for(session, address)
    policy = partner.outbound_policy if partner else settings.crypto.unknown_partner_outbound
    reasons = [_policy_source(partner, policy)]
    smime, problems = _usable_smime(usable_partner_keys(session, address, KeyKind.SMIME, now))
    reasons.extend(problems)
    pgp = usable_partner_keys(session, address, KeyKind.OPENPGP, now)
    gcm = bool(partner and partner.smime_gcm)
    base = RecipientPlan(address, Protection.HOLD, tuple(reasons), policy=policy,
                         partner=partner.name if partner else None, gcm=gcm,
                         inline=bool(partner and partner.openpgp_inline))

    def smime_plan() -> RecipientPlan:
        cipher = "AES-256-GCM" if gcm else "AES-256-CBC"
        why = f"S/MIME, {cipher}, to certificate {smime[0].fingerprint[:16]}"
        return replace(base, protection=Protection.SMIME, reasons=(*base.reasons, why),
                       keys=tuple(smime))

    def pgp_plan() -> RecipientPlan:
        why = f"OpenPGP to key {pgp[0].fingerprint}"
        return replace(base, protection=Protection.OPENPGP, reasons=(*base.reasons, why),
                       keys=tuple(pgp))

    def hold(missing: str) -> RecipientPlan:
        why = f"held: no usable key; needs {missing}"
        return replace(base, reasons=(*base.reasons, why), missing=missing)

    if policy == OutboundPolicy.REQUIRE_SMIME:
        return smime_plan() if smime else hold(
            f"an approved, valid S/MIME certificate for {address}")
    if policy == OutboundPolicy.REQUIRE_OPENPGP:
        return pgp_plan() if pgp else hold(f"an approved, valid OpenPGP key for {address}")
    if smime:
        return smime_plan()
    if pgp:
        return pgp_plan()
    if policy == OutboundPolicy.PLAINTEXT:
        why = "sent unencrypted: the partner is marked non-sensitive and has no key"
        return replace(base, protection=Protection.PLAINTEXT, reasons=(*base.reasons, why))
    rungs = (f"S/MIME not taken: no approved, valid S/MIME certificate for {address}",
             f"OpenPGP not taken: no approved, valid OpenPGP key for {address}")
    base = replace(base, reasons=(*base.reasons, *rungs))
    if policy == OutboundPolicy.EITHER_OR_PORTAL:
        unavailable = portal_unavailable(settings)
        if unavailable is None:
            why = (f"portal taken: the message waits for pickup at {settings.portal.public_url}"
                   "; the recipient gets a notice without content and the code on a second "
                   "channel")
            return replace(base, protection=Protection.PORTAL, reasons=(*base.reasons, why))
        base = replace(base, reasons=(*base.reasons, f"portal not taken: {unavailable}"))
    else:
        base = replace(base, reasons=(
            *base.reasons, f"portal not taken: the policy {policy.value} does not allow it"))
    return hold(f"an approved, valid S/MIME certificate or OpenPGP key for {address}")


def portal_unavailable(settings: Settings) -> str | None:
    """Why the portal cannot take a message for pickup, or None when it can."""
    if not settings.portal.enabled:
        return "the citizen portal is not enabled ([portal] enabled = false)"
    url = settings.portal.public_url.strip()
    if not url.startswith(("https://", "http://")):
        return "the citizen portal has no public address ([portal] public_url)"
    return None


def _policy_source(partner: PartnerPolicy | None, policy: OutboundPolicy) -> str:
    if partner is None:
        return f"no partner record: the default policy for unknown partners is {policy.value}"
    return f"partner {partner.name!r} (matched {partner.pattern}) requires {policy.value}"


def hold_reason(plans: Sequence[RecipientPlan]) -> str | None:
    """One line for the sender's notice naming every missing key, or None."""
    missing = [p.missing for p in plans if p.protection == Protection.HOLD and p.missing]
    if not missing:
        return None
    return f"{KEY_HOLD_PREFIX}: needs " + "; ".join(missing)
