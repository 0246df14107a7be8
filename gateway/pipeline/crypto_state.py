"""What the crypto stages learn about a message and hand on to later stages.

Inbound: how the message was protected and who signed it; these become the X-Xgate-* result
headers and the crypto facts on the message and in the audit trail. Outbound: each
recipient's plan and the signed forms of the entity that the encrypt stage wraps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.policy.signature import SignatureFailure, classify

if TYPE_CHECKING:
    from gateway.keydir.own_keys import OwnKeyMaterial
    from gateway.policy.outbound import RecipientPlan


@dataclass
class InboundCrypto:
    # "smime", "openpgp" or None when the message arrived unencrypted.
    encryption: str | None = None
    algorithm: str | None = None  # e.g. "aes256-gcm, rsaes-oaep" or "aes256"
    decrypted_with: str | None = None  # fingerprint of our key that opened it
    # "valid", "invalid" or None when there was no signature.
    signature: str | None = None
    signature_kind: str | None = None  # "smime" or "openpgp"
    signer: str | None = None  # e-mail address(es) the signing certificate or key names
    signer_fingerprint: str | None = None
    signer_subject: str | None = None
    # "pinned": valid because the signer is a self-signed certificate an admin approved for
    # the sender, not through a CA; None otherwise.
    signer_trust: str | None = None
    signature_reason: str | None = None  # why not valid, in the verifier's words
    # When what the reason names happened (a certificate's expiry, its revocation), if known.
    signature_reason_at: datetime | None = None
    # Set by the inbound policy: deliver, but show every reader that the signature fails.
    visible_warning: SignatureFailure | None = None

    @property
    def verified(self) -> bool:
        return self.signature == "valid"

    @property
    def failure(self) -> SignatureFailure | None:
        """Why a signature that is present fails; None when valid or absent."""
        if self.signature != "invalid":
            return None
        return classify(self.signature_kind, self.signature_reason or "signature does not "
                        "verify", self.signature_reason_at)

    def facts(self) -> dict[str, str]:
        """The facts for the audit trail and the message row (no unset keys)."""
        failure = self.failure
        values = {
            "encryption": self.encryption or "none",
            "encryption_algorithm": self.algorithm,
            "decrypted_with": self.decrypted_with,
            "signature": self.signature or "none",
            "signature_kind": self.signature_kind,
            "signer": self.signer,
            "signer_fingerprint": self.signer_fingerprint,
            "signer_subject": self.signer_subject,
            "signer_trust": self.signer_trust,
            "signature_reason": self.signature_reason,
            "signature_problem": failure.problem.value if failure else None,
        }
        return {k: v for k, v in values.items() if v}


@dataclass
class OutboundCrypto:
    plans: dict[str, RecipientPlan] = field(default_factory=dict)
    smime_signer: OwnKeyMaterial | None = None
    pgp_signer: OwnKeyMaterial | None = None
    # The entity (Content-* headers and body) signed as multipart/signed, per format.
    smime_signed: bytes | None = None
    pgp_signed: bytes | None = None
    # The sender's own client already encrypted it end to end: passed through untouched.
    pre_encrypted: bool = False
    # A notice or DSN of the gateway itself (null sender): no message content inside.
    notice: bool = False

    def may_send_as_is(self, address: str) -> bool:
        """Whether ``address`` may get the message without a copy of its own."""
        if self.pre_encrypted or self.notice:
            return True
        plan = self.plans.get(address)
        return plan is not None and plan.protection.value in ("inside", "plaintext")
