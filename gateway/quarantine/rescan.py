"""Re-scanning a stored message the way the pipeline scans it, for quarantine decisions.

The stored content is what arrived: for end-to-end encrypted mail, ciphertext. So the re-scan
is a named pipeline (``RESCAN_PIPELINES`` in gateway.pipeline.pipelines) run by the one
driver on a throwaway context: the inbound stages that open the content (decrypt, verify),
then ``rescan_verdict``, so the scanner sees what a recipient would get. Only malware counts
against a release: a blocked type or an unscannable archive is exactly what two admins look
at and may decide to let through. Content the opening stages cannot open is not clean. The
scanner asks clamd about every part whatever the type policy found, and the verdict is the
most severe finding, so a blocked executable that is also known malware is INFECTED here and
the release is refused. With the scanner away there is no verdict: ScannerUnavailable
propagates to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.delivery.transport import NoDelivery
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.driver import run_pipeline
from gateway.pipeline.outcomes import Defer
from gateway.pipeline.pipelines import rescan_stages_for
from gateway.pipeline.stages.rescan_verdict import RescanVerdictStage
from gateway.services import Services, build_services
from gateway.settings import Settings
from scanning.errors import ScannerUnavailable


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
        result = run_pipeline(ctx, rescan_stages_for(direction), services)
        if result.outcome is None:
            return RescanOutcome(True, ctx.facts["scan"])
        if result.stage != RescanVerdictStage.name:
            return RescanOutcome(False,
                                 f"cannot be opened for scanning: {result.outcome.reason}")
        if isinstance(result.outcome, Defer):
            # No verdict is no release.
            raise ScannerUnavailable(result.outcome.reason)
        return RescanOutcome(False, result.outcome.reason)


def make_rescanner(settings: Settings) -> PipelineRescanner:
    # Nothing is delivered from here: a transport that refuses to send.
    return PipelineRescanner(build_services(settings, transport=NoDelivery()))
