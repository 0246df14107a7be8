"""Scan what the message really contains, after decryption and before signing.

Inbound it runs on what decryption produced; outbound before the message is signed and
encrypted, so the gateway never seals malware for a partner. A finding quarantines the
message; the sender is told that it was not delivered, not which signature matched. With
the scanner away, the message waits in the queue: it is never delivered unscanned.
"""

from __future__ import annotations

from gateway.db import read_scope
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Defer, Quarantine
from gateway.pipeline.stages.parse import parse_checked
from gateway.quarantine import is_released
from gateway.services import Services
from scanning.errors import ScannerUnavailable
from scanning.verdict import Verdict

SENDER_NOTICE = ("the message did not pass the gateway's content check (virus scan and "
                 "attachment policy) and is kept for review by the administrators")


class ScanStage:
    name = "scan"

    def run(self, ctx: MessageContext, services: Services) -> None:
        with read_scope(services.sessions) as session:
            released = is_released(session, ctx.message_id)
        parsed = ctx.parsed if ctx.parsed is not None else parse_checked(ctx.body)
        try:
            result = services.scanner.scan(parsed, ctx.body)
        except ScannerUnavailable as exc:
            services.scanner_health.failed(str(exc))
            raise Defer(f"virus scanner unavailable: {exc}") from None
        services.scanner_health.succeeded()
        ctx.facts["scan"] = result.detail
        if released and result.verdict != Verdict.INFECTED:
            # Two admins released it after a re-scan (gateway.quarantine): their decision
            # stands for the type policy and the limits; malware still stops it.
            ctx.facts["scan"] += "; released from quarantine by two admins"
            return
        if not result.clean:
            raise Quarantine(result.detail, notice=SENDER_NOTICE)
