"""Inbound: verify S/MIME and OpenPGP signatures, then deliver the signed content.

A signature counts as valid only if it verifies, chains to a configured trust anchor at the
signing time with the right key usage (S/MIME; or is made with a self-signed certificate an
admin approved for the sender, "pinned") or comes from a key in the directory (OpenPGP), and
names the author in the From header. Otherwise the message still goes on, marked
"invalid" with the reason, and the inbound policy stage decides: quarantine, or (where an
admin chose so for the partner) delivery with a warning every reader sees. The verdict is
not made here, so that a quarantine re-scan, which runs this stage to open the content,
can still look at such a message.

The signature wrapper is removed: recipients see the plain content and the gateway's
X-Xgate-* note of who signed it, which they can trust because the gateway strips any such
header that came from outside.
"""

from __future__ import annotations

from email.message import Message

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from crypto.cms_common import entity_headers
from crypto.openpgp import PgpError
from crypto.pgp_mime import PgpKind, classify, open_pgp
from crypto.smime import MalformedMessage
from crypto.smime_verify import VerifyResult, verify_smime
from gateway.db import read_scope, session_scope
from gateway.keydir.keys import (
    KeyKind,
    find_key,
    harvest,
    pinned_certificates,
    verification_keys,
)
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Defer, Quarantine
from gateway.pipeline.stages.decrypt import record_pgp_signature, replace_content, smime_signed
from gateway.pipeline.stages.sender import sender_address
from gateway.services import Services
from gateway.trust import TrustError

_PGP_SIGNED = (PgpKind.MIME_SIGNED, PgpKind.INLINE_SIGNED)


class VerifyStage:
    name = "verify"

    def run(self, ctx: MessageContext, services: Services) -> None:
        # As in the decrypt stage: the header block as the crypto layer reads it (compat32).
        headers = entity_headers(ctx.body)
        if smime_signed(headers, ctx.body):
            entity = self._smime(ctx, services, headers)
        elif classify(ctx.body) in _PGP_SIGNED:
            entity = self._openpgp(ctx, services)
        else:
            return
        replace_content(ctx, entity)

    def _smime(self, ctx: MessageContext, services: Services, headers: Message) -> bytes:
        try:
            anchors, crls = services.trust.current()
        except TrustError as exc:
            # A broken trust configuration must not turn into "invalid signature" verdicts
            # on every partner's mail: it is the gateway's fault, so try again later.
            raise Defer(f"trust anchors unavailable: {exc}") from None
        sender = sender_address(ctx)
        try:
            # The pinned certificates are only looked up for a self-issued signer, and a
            # chain that validated before is taken from the trust store's cache.
            result = verify_smime(ctx.body, anchors, crls=crls, now=services.clock(),
                                  pinned=lambda: pinned_for(services, sender),
                                  chain_cache=services.trust.chain_cache, headers=headers)
        except MalformedMessage as exc:
            raise Quarantine(f"malformed S/MIME signature: {exc}") from None
        facts = ctx.inbound_crypto
        facts.signature_kind = "smime"
        facts.signer = ", ".join(result.signer_emails) or None
        facts.signer_fingerprint = result.signer_fingerprint
        facts.signer_subject = result.signer_subject
        valid, reason = result.valid, result.reason
        if valid and sender not in {e.lower() for e in result.signer_emails}:
            valid, reason = False, f"certificate does not name the sender {sender}"
        facts.signature = "valid" if valid else "invalid"
        facts.signer_trust = "pinned" if valid and result.pinned else None
        facts.signature_reason = None if valid else reason
        facts.signature_reason_at = None if valid else result.reason_at
        if valid and services.settings.crypto.harvest_certificates:
            self._harvest(ctx, services, result)
        return result.content

    def _harvest(self, ctx: MessageContext, services: Services, result: VerifyResult) -> None:
        signer = result.chain[0]
        fingerprint = result.signer_fingerprint
        if fingerprint in services.known_partner_keys:
            return
        if fingerprint:
            # Nearly always known already: look before taking the write lock for nothing.
            with read_scope(services.sessions) as session:
                if find_key(session, KeyKind.SMIME, fingerprint) is not None:
                    services.known_partner_keys.add(fingerprint)
                    return
        with session_scope(services.sessions) as session:
            harvest(session, kind=KeyKind.SMIME,
                    data=signer.public_bytes(serialization.Encoding.DER),
                    addresses=list(result.signer_emails), queue_id=ctx.queue_id,
                    actor=ctx.worker, now=services.clock())

    def _openpgp(self, ctx: MessageContext, services: Services) -> bytes:
        sender = sender_address(ctx)
        with read_scope(services.sessions) as session:
            certs = [k.data for k in verification_keys(session, sender, KeyKind.OPENPGP)]
        try:
            opened = open_pgp(ctx.body, services.pgp, [], certs)
        except PgpError as exc:
            raise Quarantine(f"malformed OpenPGP signature: {exc}") from None
        record_pgp_signature(ctx, opened.signature_valid, opened.signer_fingerprint,
                             opened.signer_emails, opened.reason, sender)
        return opened.content


def pinned_for(services: Services, sender: str) -> list[x509.Certificate]:
    """The self-signed certificates approved for ``sender``: valid signers without a chain."""
    with read_scope(services.sessions) as session:
        found = pinned_certificates(session, sender)
    return [x509.load_der_x509_certificate(data) for data in found]
