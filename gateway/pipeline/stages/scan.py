"""Scan what the message really contains, after decryption and before signing.

Inbound it runs on what decryption produced; outbound before the message is signed and
encrypted, so the gateway never seals malware for a partner. A finding quarantines the
message; the sender is told that it was not delivered, not which signature matched. With
the scanner away, the message waits in the queue: it is never delivered unscanned. A message
on which clamd itself fails again and again (it crashes or hangs on the content) is
quarantined as unscannable after [scanning] unscannable_after_failures tries.
"""

from __future__ import annotations

from typing import NoReturn

from gateway.db import read_scope
from gateway.delivery.notices import Bilingual
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.opening import PipelineOpener
from gateway.pipeline.outcomes import Defer, Quarantine, ScanFailed
from gateway.pipeline.stages.parse import parse_checked
from gateway.pipeline.stages.sender import sender_address
from gateway.quarantine.records import is_released
from gateway.queue.store import scan_failures
from gateway.services import Services
from scanning.errors import ScanInterrupted, ScannerUnavailable
from scanning.parts import raw_structure
from scanning.verdict import Verdict

SENDER_NOTICE = Bilingual(
    "Die Nachricht hat die Inhaltsprüfung des Gateways (Virenprüfung und Regeln für "
    "Anhänge) nicht bestanden und wird zur Prüfung zurückgehalten.",
    "the message did not pass the gateway's content check (virus scan and attachment "
    "policy) and is kept for review")


class ScanStage:
    name = "scan"

    def run(self, ctx: MessageContext, services: Services) -> None:
        released = False
        if ctx.attempt > 1:
            # Only a worker's outcome quarantines a message, and a release keeps its count
            # of attempts: on its first attempt no message can have been released.
            with read_scope(services.sessions) as session:
                released = is_released(session, ctx.message_id)
        parsed = ctx.parsed if ctx.parsed is not None else parse_checked(ctx.body)
        try:
            # The parse stages checked these very bytes against the same limits (the answer
            # is cached on the context); the scanner need not read them once more.
            checked = ctx.structure(
                lambda data: raw_structure(data, services.scanner.mime_limits)).problem is None
            result = services.scanner.scan(parsed, ctx.body, opener_for(ctx, services),
                                           structure_checked=checked)
        except ScanInterrupted as exc:
            services.scanner_health.failed(str(exc))
            # Read only now: the count matters on this rare path alone.
            with read_scope(services.sessions) as session:
                failed_before = scan_failures(session, ctx.message_id)
            _count_failure(ctx, services, failed_before + 1, exc)
        except ScannerUnavailable as exc:
            # Unreachable for every message alike (refused, no socket, all slots busy): not
            # this message's doing, so it waits uncounted for as long as clamd is away.
            services.scanner_health.failed(str(exc))
            raise Defer(f"virus scanner unavailable: {exc}") from None
        services.scanner_health.succeeded()
        ctx.facts["scan"] = result.detail
        if result.opened:
            ctx.facts["opened_attachments"] = " | ".join(result.opened)
        if released and result.verdict != Verdict.INFECTED:
            # Two admins released it after a re-scan (gateway.quarantine.records): their decision
            # stands for the type policy and the limits. clamd was asked all the same, and
            # INFECTED outranks every other finding, so a signature update between the
            # release and now still stops it.
            ctx.facts["scan"] += "; released from quarantine by two admins"
            return
        if not result.clean:
            raise Quarantine(result.detail, notice=SENDER_NOTICE)


def _count_failure(ctx: MessageContext, services: Services, failures: int,
                   exc: ScanInterrupted) -> NoReturn:
    """clamd took this message's content and then crashed or hung: counted (the worker
    records the count with the deferral, in one transaction), and at the limit the message
    is quarantined as unscannable, fail closed, instead of waiting until its lifetime ends.

    A message that was only scanning alongside the one that crashed clamd is counted too;
    it passes on a later try, long before the limit.
    """
    limit = services.settings.scanning.unscannable_after_failures
    if failures >= limit:
        ctx.facts["scan"] = (f"unscannable: clamd failed on this message {failures} times "
                             f"(last: {exc})")
        raise Quarantine(ctx.facts["scan"], notice=SENDER_NOTICE) from None
    raise ScanFailed(f"virus scan failed on this message ({failures} of {limit} tries "
                     f"before it is quarantined as unscannable): {exc}") from None


def opener_for(ctx: MessageContext, services: Services) -> PipelineOpener:
    """Decrypts attachments with the recipients' keys inbound, the sender's outbound."""
    sender = sender_address(ctx)
    addresses = list(ctx.pending) if ctx.direction == Direction.INBOUND else [sender]
    return PipelineOpener(services, direction=ctx.direction, key_addresses=addresses,
                          sender=sender)
