"""Inbound: quarantine what the partner's policy or a failing signature does not allow.

Nothing is dropped: the message waits in quarantine where an admin can see why, and the
sender and the recipients are told. The decision itself is gateway.policy.inbound; this
stage gathers its facts. A message two admins released from quarantine is not stopped here
again (as the scan stage honours a release); a failing signature is then still shown to its
readers, by the signature_warning stage.
"""

from __future__ import annotations

from gateway.db import read_scope
from gateway.keydir.partners import partner_for
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Quarantine
from gateway.pipeline.stages.sender import sender_address
from gateway.policy.inbound import InboundDecision, InboundVerdict, decide_inbound
from gateway.quarantine.records import is_released
from gateway.services import Services


class InboundPolicyStage:
    name = "inbound_policy"

    def run(self, ctx: MessageContext, services: Services) -> None:
        sender = sender_address(ctx)
        crypto = ctx.inbound_crypto
        failure = crypto.failure

        def decide(released: bool) -> InboundDecision:
            return decide_inbound(encrypted=crypto.encryption is not None,
                                  verified=crypto.verified, failure=failure,
                                  partner=partner, released=released)

        with read_scope(services.sessions) as session:
            partner = partner_for(session, sender)
            decision = decide(False)
            # Asked only when it matters: most mail passes without this look-up.
            if decision.verdict is InboundVerdict.QUARANTINE and is_released(
                    session, ctx.message_id):
                decision = decide(True)
                ctx.facts["inbound_policy"] = "released from quarantine by two admins"
        if partner is not None:
            ctx.facts["partner"] = partner.name
        if decision.verdict is InboundVerdict.QUARANTINE:
            raise Quarantine(decision.reason)
        if decision.verdict is InboundVerdict.WARN:
            crypto.visible_warning = decision.failure
            ctx.facts["signature_warning"] = f"delivered with a visible warning: {decision.reason}"
