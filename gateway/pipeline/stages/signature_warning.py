"""Inbound: show every reader that the message's signature fails, where it is delivered anyway.

The inbound policy delivers such mail only where an admin chose so for the partner, or two
admins released it from quarantine. The X-Xgate-Signature header says "invalid", but mail
clients hide headers; so the subject gets a prefix (``crypto.invalid_signature_subject_prefix``)
and a short text part at the top says why, German first, English below.
"""

from __future__ import annotations

from gateway.mime.leading_text import prefix_subject, with_leading_text
from gateway.pipeline.context import MessageContext
from gateway.pipeline.stages.sender import sender_address
from gateway.policy.signature import SignatureFailure
from gateway.services import Services


def warning_text(failure: SignatureFailure, sender: str, queue_id: str) -> str:
    who = sender or "dem angegebenen Absender"
    sender_en = sender or "the stated sender"
    return (
        "ACHTUNG: Die Signatur dieser Nachricht ist ungültig.\n"
        "\n"
        f"Die Nachricht ist signiert, aber die Signatur hält der Prüfung nicht stand: "
        f"{failure.german}.\n"
        f"Es ist nicht sicher, dass die Nachricht von {who} stammt und unverändert "
        "ist. Verlassen Sie sich nicht auf ihren Inhalt, bevor Sie ihn auf einem anderen "
        "Weg (z. B. telefonisch) mit dem Absender geklärt haben.\n"
        "\n"
        "WARNING: the signature of this message is invalid.\n"
        "\n"
        f"The message is signed, but the signature fails: {failure.reason}.\n"
        f"It is not certain that the message comes from {sender_en} and is unchanged. "
        "Do not rely on its content before you have confirmed it with the sender by "
        "another channel (e.g. by phone).\n"
        "\n"
        f"-- Mail-Gateway / mail gateway, Referenz / reference {queue_id}\n"
    )


class SignatureWarningStage:
    name = "signature_warning"

    def run(self, ctx: MessageContext, services: Services) -> None:
        failure = ctx.inbound_crypto.visible_warning
        if failure is None:
            return
        sender = sender_address(ctx)
        marked = with_leading_text(ctx.body, warning_text(failure, sender, ctx.queue_id))
        prefix = services.settings.crypto.invalid_signature_subject_prefix
        ctx.content = prefix_subject(marked, prefix)
        # Later stages read only header fields, from the new content.
        ctx.parsed = None
