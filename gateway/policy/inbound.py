"""The inbound protection decision: deliver, deliver with a visible warning, or quarantine.

A rule over facts only (how the message was protected, what the partner demands, whether
two admins released it); the inbound_policy stage gathers the facts and acts on the answer.

A signature that is present but fails is not the same as no signature: it means the content
was altered or the certificate is broken, and a person must look. So it is quarantined,
for every sender, unless an admin chose for that partner to have such mail delivered with a
warning every reader sees. Mail without a signature is not affected (a partner's
``require signature`` decides that).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.keydir.models import InvalidSignature
from gateway.keydir.partners import PartnerPolicy
from gateway.policy.signature import SignatureFailure


class InboundVerdict(StrEnum):
    DELIVER = "deliver"
    WARN = "warn"  # delivered, with the failing signature shown to every reader
    QUARANTINE = "quarantine"


@dataclass(frozen=True)
class InboundDecision:
    verdict: InboundVerdict
    reason: str = ""  # why it is quarantined or warned about
    failure: SignatureFailure | None = None


def invalid_signature_action(partner: PartnerPolicy | None) -> InvalidSignature:
    """What a failing signature leads to for mail from ``partner`` (None: no partner)."""
    return partner.inbound_invalid_signature if partner else InvalidSignature.QUARANTINE


def decide_inbound(*, encrypted: bool, verified: bool, failure: SignatureFailure | None,
                   partner: PartnerPolicy | None, released: bool) -> InboundDecision:
    """``failure`` is set when a signature is present and fails; ``released`` when two admins
    released the message from quarantine."""
    if failure is not None and not failure.fails:
        failure = None  # unchecked by a limit of ours: proves nothing, like no signature
    if released:
        # People looked at it and decided; a failing signature is still shown to readers.
        if failure is not None:
            return InboundDecision(InboundVerdict.WARN, failure.summary, failure)
        return InboundDecision(InboundVerdict.DELIVER)
    name = partner.name if partner else ""
    if partner is not None and partner.inbound_require_encryption and not encrypted:
        return InboundDecision(InboundVerdict.QUARANTINE, f"partner {name!r} must encrypt, "
                               "but the message arrived unencrypted")
    if failure is not None:
        if invalid_signature_action(partner) is InvalidSignature.QUARANTINE:
            return InboundDecision(InboundVerdict.QUARANTINE, failure.summary, failure)
        if partner is not None and partner.inbound_require_signature:
            return InboundDecision(InboundVerdict.QUARANTINE,
                                   f"partner {name!r} must sign validly: {failure.summary}",
                                   failure)
        return InboundDecision(InboundVerdict.WARN, failure.summary, failure)
    if partner is not None and partner.inbound_require_signature and not verified:
        return InboundDecision(InboundVerdict.QUARANTINE,
                               f"partner {name!r} must sign validly: the message is not signed")
    return InboundDecision(InboundVerdict.DELIVER)
