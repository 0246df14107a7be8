"""Inbound: tell the recipient, in X-Xgate-* headers, how the message was protected.

These notes are trustworthy only because the strip_result_headers stage removed every
X-Xgate-* header that came from outside before any stage ran.
"""

from __future__ import annotations

from gateway.mime.headers import remove_headers
from gateway.pipeline.context import MessageContext
from gateway.pipeline.stages.strip_result_headers import is_result_header
from gateway.services import Services

_KIND_NAMES = {"smime": "S/MIME", "openpgp": "OpenPGP"}


class ResultHeadersStage:
    name = "result_headers"

    def run(self, ctx: MessageContext, services: Services) -> None:
        # Decryption can bring header fields from inside the encrypted entity (protected
        # headers) up to the top: strip forged notes a second time, now that we see them.
        ctx.content = remove_headers(ctx.body, is_result_header)
        crypto = ctx.inbound_crypto
        headers = ctx.result_headers
        headers["X-Xgate-Queue-Id"] = ctx.queue_id
        if crypto.encryption:
            detail = f"{_KIND_NAMES[crypto.encryption]} {crypto.algorithm or 'unknown cipher'}"
            if crypto.decrypted_with:
                detail += f"; key={crypto.decrypted_with}"
            headers["X-Xgate-Encryption"] = detail
        else:
            headers["X-Xgate-Encryption"] = "none"
        headers["X-Xgate-Signature"] = crypto.signature or "none"
        if crypto.signature:
            kind = _KIND_NAMES.get(crypto.signature_kind or "", "unknown")
            signer = crypto.signer or "no e-mail address"
            who = f"{signer} ({kind}"
            if crypto.signer_fingerprint:
                who += f" {crypto.signer_fingerprint}"
            if crypto.signer_subject:
                who += f"; {crypto.signer_subject}"
            headers["X-Xgate-Signer"] = who + ")"
        if crypto.signature_reason:
            headers["X-Xgate-Signature-Reason"] = crypto.signature_reason
