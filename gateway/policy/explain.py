"""``xgate policy explain``: what would happen to a message from A to B, and why.

A dry run over the same decisions the pipeline makes (routing, the partner policy, the key
directory, the own keys), reading the database and changing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from gateway.delivery.routing import domain_of, resolve, routed_inbound
from gateway.keydir.keys import KeyKind
from gateway.keydir.models import InvalidSignature
from gateway.keydir.own_keys import own_keys_for, signing_key_for
from gateway.keydir.partners import PartnerPolicy, partner_for
from gateway.policy.inbound import invalid_signature_action
from gateway.policy.outbound import Protection, plan_recipient
from gateway.settings import Settings
from mailboxes.directory import mailbox_id_for


@dataclass
class Explanation:
    direction: str  # "outbound" or "inbound"
    verdict: str  # one word: deliver, encrypt-smime, encrypt-openpgp, portal-pickup, hold ...
    steps: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"direction": self.direction, "verdict": self.verdict, "steps": self.steps}


def explain(session: Session, settings: Settings, master_key: MasterKey, sender: str,
            recipient: str, now: datetime) -> Explanation:
    sender, recipient = sender.strip().lower(), recipient.strip().lower()
    if domain_of(sender) in settings.gateway.local_domains:
        return _outbound(session, settings, master_key, sender, recipient, now)
    return _inbound(session, settings, master_key, sender, recipient)


def _outbound(session: Session, settings: Settings, master_key: MasterKey, sender: str,
              recipient: str, now: datetime) -> Explanation:
    result = Explanation("outbound", "deliver", [
        f"{sender} is in a local domain: staff submission, outbound pipeline"])
    route = resolve(session, recipient, settings.delivery.routes)
    if route is None:
        result.verdict = "refuse"
        result.steps.append(f"no route to {recipient}: the recipient fails with 5.1.2")
        return result
    plan = plan_recipient(session, settings, recipient, route, now)
    result.steps.extend(plan.reasons)
    if plan.protection == Protection.HOLD:
        result.verdict = "hold"
        result.steps.append("the message is held and the sender is told which key is missing")
        return result
    if plan.protection == Protection.INSIDE:
        return result
    if plan.protection == Protection.PORTAL:
        result.verdict = "portal-pickup"
        result.steps.append(
            "no mail with content leaves: a pickup item is kept sealed (linked to the ticket "
            f"when the message is a ticket reply), valid {settings.portal.pickup_valid_days} "
            "days; the code is shown in the ticket or sent by SMS")
        return result
    kinds = {Protection.SMIME: [KeyKind.SMIME], Protection.OPENPGP: [KeyKind.OPENPGP],
             Protection.PLAINTEXT: [KeyKind.SMIME, KeyKind.OPENPGP]}[plan.protection]
    result.verdict = {Protection.SMIME: "encrypt-smime", Protection.OPENPGP: "encrypt-openpgp",
                      Protection.PLAINTEXT: "send-plaintext"}[plan.protection]
    for kind in kinds:
        signer = signing_key_for(session, master_key, sender, kind, now)
        if signer is not None:
            result.steps.append(f"signed with our {kind.value} key {signer.fingerprint} "
                                f"({signer.address})")
            break
    else:
        result.steps.append(f"unsigned: no valid own {'/'.join(k.value for k in kinds)} key "
                            f"for {sender} or its domain")
    return result


def _inbound(session: Session, settings: Settings, master_key: MasterKey, sender: str,
             recipient: str) -> Explanation:
    result = Explanation("inbound", "deliver", [
        f"{sender} is outside the local domains: inbound pipeline"])
    mailbox = mailbox_id_for(session, recipient)
    if mailbox is not None:
        result.steps.append(f"filed in the shared mailbox {recipient}")
    elif routed_inbound(recipient, settings.gateway.local_domains, settings.delivery.routes):
        result.steps.append(f"relayed to the office's internal mail server for {recipient}")
    else:
        result.verdict = "refuse"
        result.steps.append(f"{recipient} is not a local recipient: refused at RCPT with 550")
        return result
    for kind in (KeyKind.SMIME, KeyKind.OPENPGP):
        keys = own_keys_for(session, master_key, recipient, kind)
        if keys:
            result.steps.append(f"{kind.value}-encrypted mail is decrypted (tries "
                                f"{len(keys)} own key(s): "
                                + ", ".join(k.fingerprint[:16] for k in keys) + ")")
        else:
            result.steps.append(f"{kind.value}-encrypted mail is quarantined: no own "
                                f"{kind.value} key for {recipient}")
    if settings.crypto.trust_anchors_file is None:
        result.steps.append("S/MIME signatures cannot verify: no trust anchors configured")
    partner = partner_for(session, sender)
    if partner is None:
        result.steps.append("no partner record: unencrypted and unsigned mail is accepted")
        result.steps.append(_invalid_signature_step(settings, partner))
        return result
    result.steps.append(f"partner {partner.name!r} (matched {partner.pattern})")
    if partner.inbound_require_encryption:
        result.steps.append("unencrypted mail from this partner is quarantined")
    if partner.inbound_require_signature:
        result.steps.append("mail without a valid signature from this partner is quarantined")
    if not (partner.inbound_require_encryption or partner.inbound_require_signature):
        result.steps.append("the partner's policy accepts unencrypted, unsigned mail")
    result.steps.append(_invalid_signature_step(settings, partner))
    return result


def _invalid_signature_step(settings: Settings, partner: PartnerPolicy | None) -> str:
    """What gateway.policy.inbound does with a signature that is present but fails."""
    what = ("a signature that fails (altered content; expired, revoked or untrusted "
            "certificate; unknown key) ")
    if invalid_signature_action(partner) is InvalidSignature.QUARANTINE:
        default = "" if partner is not None else " (default)"
        return what + f"is quarantined with the reason{default}"
    prefix = settings.crypto.invalid_signature_subject_prefix
    if partner is not None and partner.inbound_require_signature:
        return what + "is quarantined: the partner must sign validly"
    return what + (f"is delivered with a warning: the subject gets {prefix!r} and a text part "
                   "at the top says why (partner setting invalid-signature warn)")
