"""The deliver stage's last line of defence: no unplanned plaintext leaves for outside."""

from __future__ import annotations

from gateway.delivery.transport import RecordingTransport
from gateway.models import Direction, MessageState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.driver import run_pipeline
from gateway.pipeline.pipelines import STAGES
from gateway.services import Services
from gateway.settings import RelayRoute

RAW = b"From: sb@jugendamt.example\r\nTo: x@partner.example\r\n\r\nGutachten\r\n"


def _context(services: Services, internal: bool) -> MessageContext:
    route = RelayRoute(domain="partner.example", host="relay.invalid", internal=internal)
    return MessageContext(message_id=1, queue_id="Q1", direction=Direction.OUTBOUND,
                          mail_from="sb@jugendamt.example", received_at=services.clock(),
                          attempt=1, raw=RAW, pending=["x@partner.example"],
                          routes={"x@partner.example": route})


def test_outbound_without_a_plan_is_not_relayed(services: Services,
                                                transport: RecordingTransport) -> None:
    # As if a bug skipped the outbound_policy stage: the deliver stage alone must refuse.
    result = run_pipeline(_context(services, internal=False), [STAGES["deliver"]], services)
    assert result.internal_error and result.state == MessageState.FAILED
    assert transport.sent == []


def test_internal_route_needs_no_plan(services: Services,
                                      transport: RecordingTransport) -> None:
    ctx = _context(services, internal=True)
    # Stops before the database: the relay "delivers", then recording the reply needs a row.
    run_pipeline(ctx, [STAGES["deliver"]], services)
    assert [rcpts for _, _, rcpts, _ in transport.sent] == [("x@partner.example",)]
