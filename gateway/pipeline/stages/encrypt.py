"""Outbound: encrypt each recipient's copy as its plan says.

Recipients that share a format (and, for S/MIME, the cipher) share one encrypted copy
addressed to all their keys. Each copy carries X-Xgate-* headers saying what was done, so
the office's journal and the partner can see it.
"""

from __future__ import annotations

from collections import defaultdict

from cryptography import x509

from crypto.pgp_mime import seal_pgp_inline, seal_pgp_mime
from crypto.smime_out import encrypt_mime
from gateway.mime.entity import join_entity
from gateway.mime.headers import prepend_headers
from gateway.pipeline.context import MessageContext
from gateway.policy.outbound import Protection, RecipientPlan
from gateway.services import Services


class EncryptStage:
    name = "encrypt"

    def run(self, ctx: MessageContext, services: Services) -> None:
        state = ctx.outbound_crypto
        if state.pre_encrypted:
            return
        outer, entity = ctx.protected_entity()
        groups: dict[tuple[Protection, bool, bool], list[RecipientPlan]] = defaultdict(list)
        for plan in state.plans.values():
            # A portal recipient gets no copy at all (gateway.delivery.portal_pickup).
            if plan.protection not in (Protection.INSIDE, Protection.PORTAL):
                groups[(plan.protection, plan.gcm, plan.inline)].append(plan)
        for (protection, gcm, inline), plans in groups.items():
            if protection == Protection.SMIME:
                certs = [x509.load_der_x509_certificate(k.data) for p in plans for k in p.keys]
                inner = state.smime_signed or entity
                sealed = encrypt_mime(inner, certs, gcm=gcm)
                note = f"S/MIME {'aes256-gcm' if gcm else 'aes256-cbc'}"
                signed = state.smime_signer.fingerprint if state.smime_signer else None
            elif protection == Protection.OPENPGP:
                signer = state.pgp_signer.private if state.pgp_signer else None
                keys = [k.data for p in plans for k in p.keys]
                as_inline = (seal_pgp_inline(entity, services.pgp, keys, signer)
                             if inline else None)
                sealed = as_inline or seal_pgp_mime(entity, services.pgp, keys, signer)
                note = "OpenPGP inline" if as_inline else "OpenPGP"
                signed = state.pgp_signer.fingerprint if state.pgp_signer else None
            else:
                sealed = state.smime_signed or state.pgp_signed or entity
                note = "none (partner marked non-sensitive)"
                signer_key = (state.smime_signer if state.smime_signed
                              else state.pgp_signer if state.pgp_signed else None)
                signed = signer_key.fingerprint if signer_key else None
            headers = {"X-Xgate-Encryption": note,
                       "X-Xgate-Signature": f"signed; key={signed}" if signed else "none"}
            # Unsigned plaintext goes out byte for byte as it came.
            whole = ctx.body if sealed is entity else join_entity(outer, sealed)
            copy = prepend_headers(whole, headers)
            for plan in plans:
                ctx.outgoing[plan.recipient] = copy
                ctx.facts[f"encryption:{plan.recipient}"] = note
                if plan.keys:
                    ctx.facts[f"keys:{plan.recipient}"] = ",".join(k.fingerprint
                                                                   for k in plan.keys)
