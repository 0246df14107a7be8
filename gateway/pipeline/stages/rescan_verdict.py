"""The verdict of a quarantine re-scan (gateway.quarantine.rescan): the scanner on what the
opening stages produced, judged the way two admins deciding a release need it.

Only malware counts against a release: a blocked type or an unscannable archive is exactly
what the admins look at and may let through, so those findings are noted, not raised. The
scanner asks clamd about every part whatever the type policy found, and the verdict is the
most severe finding, so a blocked executable that is also known malware is INFECTED here.
"""

from __future__ import annotations

from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Defer, Quarantine
from gateway.pipeline.stages.parse import parse_checked
from gateway.pipeline.stages.scan import opener_for
from gateway.services import Services
from scanning.errors import ScannerUnavailable
from scanning.verdict import Verdict


class RescanVerdictStage:
    name = "rescan_verdict"

    def run(self, ctx: MessageContext, services: Services) -> None:
        parsed = ctx.parsed if ctx.parsed is not None else parse_checked(ctx.body)
        try:
            result = services.scanner.scan(parsed, ctx.body, opener_for(ctx, services))
        except ScannerUnavailable as exc:
            # No verdict: the re-scanner turns this back into ScannerUnavailable.
            raise Defer(f"virus scanner unavailable: {exc}") from None
        ctx.facts["scan"] = result.detail
        if result.verdict == Verdict.INFECTED:
            raise Quarantine(result.detail)
