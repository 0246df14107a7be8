"""Inbound: a partner that must encrypt or sign, and did not, is quarantined with the reason.

Nothing is dropped: the message waits in quarantine where an admin can see why, and the
sender is told (without internal detail) that it was not delivered.
"""

from __future__ import annotations

from gateway.db import read_scope
from gateway.keydir.partners import partner_for
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Quarantine
from gateway.pipeline.stages.sender import sender_address
from gateway.services import Services


class InboundPolicyStage:
    name = "inbound_policy"

    def run(self, ctx: MessageContext, services: Services) -> None:
        sender = sender_address(ctx)
        with read_scope(services.sessions) as session:
            partner = partner_for(session, sender)
        if partner is None:
            return
        crypto = ctx.inbound_crypto
        ctx.facts["partner"] = partner.name
        if partner.inbound_require_encryption and crypto.encryption is None:
            raise Quarantine(f"partner {partner.name!r} must encrypt, but the message arrived "
                             "unencrypted")
        if partner.inbound_require_signature and not crypto.verified:
            why = crypto.signature_reason or "the message is not signed"
            raise Quarantine(f"partner {partner.name!r} must sign validly: {why}")
