"""The pipelines: tuples of stage names, looked up in one registry.

Features add stages here without touching the driver.
"""

from __future__ import annotations

from gateway.models import Direction
from gateway.pipeline.stage import Stage
from gateway.pipeline.stages.consent import ConsentStage
from gateway.pipeline.stages.decrypt import DecryptStage
from gateway.pipeline.stages.deliver import DeliverStage
from gateway.pipeline.stages.encrypt import EncryptStage
from gateway.pipeline.stages.inbound_policy import InboundPolicyStage
from gateway.pipeline.stages.outbound_policy import OutboundPolicyStage
from gateway.pipeline.stages.parse import ParseStage, ReparseStage
from gateway.pipeline.stages.rescan_verdict import RescanVerdictStage
from gateway.pipeline.stages.result_headers import ResultHeadersStage
from gateway.pipeline.stages.route import RouteStage
from gateway.pipeline.stages.scan import ScanStage
from gateway.pipeline.stages.sign import SignStage
from gateway.pipeline.stages.signature_warning import SignatureWarningStage
from gateway.pipeline.stages.strip_result_headers import StripResultHeadersStage
from gateway.pipeline.stages.verify import VerifyStage

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (StripResultHeadersStage(), ParseStage(), DecryptStage(), VerifyStage(),
                  ReparseStage(), ScanStage(), InboundPolicyStage(), SignatureWarningStage(),
                  ResultHeadersStage(), RouteStage(), ConsentStage(),
                  OutboundPolicyStage(), SignStage(), EncryptStage(), DeliverStage(),
                  RescanVerdictStage())
}

PIPELINES: dict[Direction, tuple[str, ...]] = {
    # Decrypt before verify: partners sign, then encrypt (RFC 8551 section 3.7).
    # Scan what decryption produced: inside the controlled zone, before anyone reads it.
    # A signature that fails is quarantined by inbound_policy, or (where the partner's
    # admin chose so) shown to every reader by signature_warning.
    Direction.INBOUND: ("strip_result_headers", "parse", "decrypt", "verify", "reparse", "scan",
                        "inbound_policy", "signature_warning", "result_headers", "route",
                        "deliver"),
    # Route first: mail for a shared mailbox or the internal server needs no encryption.
    # Scan before signing and encrypting: the gateway never seals malware for a partner.
    # Consent before the key policy: a report nobody may receive waits for consent, not for
    # a key, and nothing is signed in the office's name that must not go.
    Direction.OUTBOUND: ("strip_result_headers", "parse", "route", "scan", "consent",
                         "outbound_policy", "sign", "encrypt", "deliver"),
}


# The quarantine re-scan (gateway.quarantine.rescan): the stored content opened as the
# pipeline opens it (for end-to-end encrypted mail the store holds ciphertext), then judged
# for a release. Nothing is routed or delivered.
RESCAN_PIPELINES: dict[Direction, tuple[str, ...]] = {
    Direction.INBOUND: ("strip_result_headers", "parse", "decrypt", "verify", "reparse",
                        "rescan_verdict"),
    Direction.OUTBOUND: ("strip_result_headers", "parse", "rescan_verdict"),
}


def stages_for(direction: Direction) -> list[Stage]:
    return [STAGES[name] for name in PIPELINES[direction]]


def rescan_stages_for(direction: Direction) -> list[Stage]:
    return [STAGES[name] for name in RESCAN_PIPELINES[direction]]
