"""Outbound: sign the entity with the sender's own key, in the format each recipient gets.

S/MIME recipients, and plaintext ones, get a multipart/signed S/MIME entity when the sender
(or the office's domain key) has an S/MIME certificate; OpenPGP recipients get an OpenPGP
signature inside the encryption, made by the encrypt stage with the key chosen here. With no
key to sign with, mail still goes out encrypted: encryption is never skipped for a missing
signature, and the facts say it was unsigned.
"""

from __future__ import annotations

from cryptography import x509

from crypto.pgp_mime import sign_pgp_mime
from crypto.smime_out import sign_mime
from gateway.db import read_scope
from gateway.keydir.keys import KeyKind
from gateway.keydir.own_keys import signing_key_for
from gateway.pipeline.context import MessageContext
from gateway.policy.outbound import Protection
from gateway.services import Services


class SignStage:
    name = "sign"

    def run(self, ctx: MessageContext, services: Services) -> None:
        state = ctx.outbound_crypto
        wanted = {plan.protection for plan in state.plans.values()}
        if state.pre_encrypted or not wanted - {Protection.INSIDE, Protection.PORTAL}:
            return
        now = services.clock()
        with read_scope(services.sessions) as session:
            state.smime_signer = signing_key_for(session, services.master_key, ctx.mail_from,
                                                 KeyKind.SMIME, now)
            state.pgp_signer = signing_key_for(session, services.master_key, ctx.mail_from,
                                               KeyKind.OPENPGP, now)
        _, entity = ctx.protected_entity()
        smime_wanted = wanted & {Protection.SMIME, Protection.PLAINTEXT}
        if state.smime_signer and smime_wanted:
            signer = state.smime_signer
            key = services.private_keys.load(signer)
            # The intermediates it was imported with: partners that trust only the root
            # need them to build the chain.
            chain = x509.load_pem_x509_certificates(signer.chain) if signer.chain else []
            state.smime_signed = sign_mime(entity, x509.load_der_x509_certificate(signer.public),
                                           key, chain=chain)
            ctx.facts["signed_smime"] = signer.fingerprint
        if (Protection.PLAINTEXT in wanted and state.smime_signed is None
                and state.pgp_signer is not None):
            state.pgp_signed = sign_pgp_mime(entity, services.pgp, state.pgp_signer.private)
            ctx.facts["signed_openpgp"] = state.pgp_signer.fingerprint
        if Protection.OPENPGP in wanted and state.pgp_signer is not None:
            ctx.facts["signed_openpgp"] = state.pgp_signer.fingerprint
