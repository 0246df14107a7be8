"""Re-scanning a stored message the way the pipeline scans it, for quarantine decisions.

The stored content is what arrived: for end-to-end encrypted mail, ciphertext. So the
inbound stages that open it (decrypt, verify) run first, on a throwaway context, and the
scanner sees what a recipient would get. Only malware counts against a release: a blocked
type or an unscannable archive is exactly what two admins look at and may decide to let
through. The scanner asks clamd about every part whatever the type policy found, and the
verdict is the most severe finding, so a blocked executable that is also known malware is
INFECTED here and the release is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.delivery.transport import RecordingTransport
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Outcome
from gateway.pipeline.pipelines import STAGES
from gateway.pipeline.stages.parse import parse_checked
from gateway.pipeline.stages.scan import opener_for
from gateway.services import Services, build_services
from gateway.settings import Settings
from scanning.verdict import Verdict

# What opens the content before it is scanned, per direction (the stages' own code).
_OPENING = {Direction.INBOUND: ("strip_result_headers", "parse", "decrypt", "verify",
                                "reparse"),
            Direction.OUTBOUND: ("strip_result_headers", "parse")}


@dataclass(frozen=True)
class RescanOutcome:
    clean: bool
    detail: str


class PipelineRescanner:
    def __init__(self, services: Services) -> None:
        self.services = services

    def __call__(self, content: bytes, direction: Direction,
                 recipients: list[str]) -> RescanOutcome:
        services = self.services
        ctx = MessageContext(message_id=0, queue_id="rescan", direction=direction,
                             mail_from="", received_at=services.clock(), attempt=0,
                             raw=content, pending=list(recipients), worker="rescan")
        try:
            for name in _OPENING[direction]:
                STAGES[name].run(ctx, services)
        except Outcome as outcome:
            return RescanOutcome(False, f"cannot be opened for scanning: {outcome.reason}")
        parsed = ctx.parsed if ctx.parsed is not None else parse_checked(ctx.body)
        # ScannerUnavailable propagates: no verdict is no release.
        result = services.scanner.scan(parsed, ctx.body, opener_for(ctx, services))
        if result.verdict == Verdict.INFECTED:
            return RescanOutcome(False, result.detail)
        return RescanOutcome(True, result.detail)


def make_rescanner(settings: Settings) -> PipelineRescanner:
    # Nothing is delivered from here: a transport that only records is enough.
    return PipelineRescanner(build_services(settings, transport=RecordingTransport()))
