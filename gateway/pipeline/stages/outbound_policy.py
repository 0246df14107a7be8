"""Outbound: decide each recipient's protection; hold the message if a key is missing.

Runs after routing (a shared mailbox or the internal mail server needs no encryption) and
before signing and encryption, which carry the plans out.
"""

from __future__ import annotations

from crypto.pgp_mime import PgpKind, classify
from gateway.db import read_scope
from gateway.delivery.notices import Bilingual
from gateway.models import HoldKind
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Hold
from gateway.pipeline.stages.decrypt import smime_kind
from gateway.policy.outbound import Protection, RecipientPlan, hold_reason, plan_recipient
from gateway.services import Services
from gateway.settings import OutboundPolicy

_KEY_DE = {OutboundPolicy.REQUIRE_SMIME: "ein freigegebenes, gültiges S/MIME-Zertifikat",
           OutboundPolicy.REQUIRE_OPENPGP: "ein freigegebener, gültiger OpenPGP-Schlüssel"}
_ANY_KEY_DE = ("ein freigegebenes, gültiges S/MIME-Zertifikat oder ein freigegebener, "
               "gültiger OpenPGP-Schlüssel")


def _key_de(plan: RecipientPlan) -> str:
    return _KEY_DE.get(plan.policy, _ANY_KEY_DE) if plan.policy else _ANY_KEY_DE


def key_hold_notice(reason: str, plans: list[RecipientPlan]) -> Bilingual:
    """What the sender of a message held for a missing key is told (``reason`` names the
    missing keys in English)."""
    listed = "; ".join(f"für {p.recipient} {_key_de(p)}" for p in plans
                       if p.protection == Protection.HOLD)
    return Bilingual(
        "Die Nachricht muss verschlüsselt werden, aber es fehlt ein verwendbarer Schlüssel: "
        f"{listed}. Sie wird von selbst verschlüsselt gesendet, sobald ein passender "
        "Schlüssel freigegeben ist.",
        f"{reason}. It goes out by itself, encrypted, as soon as a matching key is "
        "approved.")


class OutboundPolicyStage:
    name = "outbound_policy"

    def run(self, ctx: MessageContext, services: Services) -> None:
        state = ctx.outbound_crypto
        if smime_kind(ctx.headers(), ctx.body) == "encrypted" or classify(ctx.body) in (
                PgpKind.MIME_ENCRYPTED, PgpKind.INLINE_ENCRYPTED):
            # The sender's own client encrypted it end to end; we can neither read it nor
            # make it safer, and wrapping it again would only confuse the recipient.
            state.pre_encrypted = True
            ctx.facts["encryption"] = "by the sender's client"
            return
        if not ctx.mail_from:
            # The gateway's own notices and DSNs: headers and our text only, never a
            # message's content, so they go out as they are (and are never held).
            ctx.facts["encryption"] = "none (gateway notice)"
            state.notice = True
            return
        now = services.clock()
        with read_scope(services.sessions) as session:
            for address in ctx.pending:
                state.plans[address] = plan_recipient(session, services.settings, address,
                                                      ctx.routes[address], now)
        for address, plan in state.plans.items():
            ctx.facts[f"plan:{address}"] = plan.protection.value
        reason = hold_reason(list(state.plans.values()))
        if reason:
            raise Hold(reason, kind=HoldKind.KEY_MISSING,
                       notice=key_hold_notice(reason, list(state.plans.values())))
