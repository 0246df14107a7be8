"""Inbound: tell the recipient, in X-Xgate-* headers, how the message was protected.

These notes are trustworthy only because the strip_result_headers stage removed every
X-Xgate-* header (and every Authentication-Results in our name) that came from outside before
any stage ran, and this stage removes them once more from what decryption brought up.
"""

from __future__ import annotations

from gateway.pipeline.context import MessageContext
from gateway.pipeline.stages.strip_result_headers import strip_forged_verdicts
from gateway.services import Services

_HANDOVER_FIELDS = ("Case", "Category", "Release", "Legal-Basis")
_KIND_NAMES = {"smime": "S/MIME", "openpgp": "OpenPGP"}


class ResultHeadersStage:
    name = "result_headers"

    def run(self, ctx: MessageContext, services: Services) -> None:
        handover = _handover(ctx)
        # Decryption can bring header fields from inside the encrypted entity (protected
        # headers) up to the top: strip forged notes a second time, now that we see them.
        # Not earlier: the handover fields above are read from inside first. No stage in
        # between reads Authentication-Results.
        ctx.content = strip_forged_verdicts(ctx.body, services.settings.smtp.hostname)
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
            if crypto.signer_trust:
                who += f"; {crypto.signer_trust}"
            headers["X-Xgate-Signer"] = who + ")"
        if crypto.signature_reason:
            headers["X-Xgate-Signature-Reason"] = crypto.signature_reason
        headers.update(handover)


def _handover(ctx: MessageContext) -> dict[str, str]:
    """A partner gateway's case handover: the case and the release it was sent under.

    Read only from inside the encryption (every such field outside was stripped before
    decryption), and passed on under our own names, X-Xgate-Handover-*, so it is clear these
    are the sender's statements; X-Xgate-Signature says whether the sender is verified.
    """
    if not ctx.inbound_crypto.encryption:
        return {}
    headers = ctx.headers()
    found = {}
    for field in _HANDOVER_FIELDS:
        value = headers.get(f"X-Xgate-{field}")
        if value is not None and str(value).strip():
            found[f"X-Xgate-Handover-{field}"] = str(value)[:500]
    return found
