"""Outcomes reach the driver, whatever a stage catches on the way; each has one disposition."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.models import Direction, HoldKind, MessageState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.dispositions import DISPOSITIONS, disposition_of
from gateway.pipeline.driver import run_pipeline
from gateway.pipeline.outcomes import Defer, Hold, Outcome, Quarantine, Reject
from gateway.services import Services

OUTCOMES = [Hold("no consent", kind=HoldKind.CONSENT), Quarantine("infected"), Reject("refused"),
            Defer("later")]


def _careless_helper(outcome: Outcome) -> None:
    """Like a helper a stage calls that guards itself with a broad ``except Exception``."""
    try:
        raise outcome
    except Exception:  # the point of the test
        pytest.fail("except Exception swallowed an outcome")


@dataclass
class _CarelessStage:
    outcome: Outcome
    name: str = "careless"

    def run(self, ctx: MessageContext, services: Services) -> None:
        try:
            _careless_helper(self.outcome)
        except Exception:  # the point of the test
            pytest.fail("except Exception swallowed an outcome")


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o).__name__)
def test_except_exception_does_not_swallow_an_outcome(outcome: Outcome) -> None:
    assert not isinstance(outcome, Exception)
    with pytest.raises(type(outcome)):
        _careless_helper(outcome)


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o).__name__)
def test_an_outcome_passes_a_careless_stage_and_reaches_the_driver(
        services: Services, outcome: Outcome) -> None:
    ctx = MessageContext(message_id=1, queue_id="Q1", direction=Direction.INBOUND,
                         mail_from="a@partner.example", received_at=services.clock(),
                         attempt=1, raw=b"\r\n", pending=["x@jugendamt.example"])
    result = run_pipeline(ctx, [_CarelessStage(outcome)], services)
    assert result.outcome is outcome and result.stage == "careless"
    assert not result.internal_error


def test_every_outcome_has_one_disposition_with_its_own_state() -> None:
    assert disposition_of(Hold("x", kind=HoldKind.CONSENT)).state == MessageState.HELD
    assert disposition_of(Quarantine("x")).state == MessageState.QUARANTINED
    assert disposition_of(Reject("x")).state == MessageState.REJECTED
    assert disposition_of(Defer("x")).state == MessageState.DEFERRED
    assert disposition_of(Outcome("crash")).state == MessageState.FAILED
    assert [d.outcome for d in DISPOSITIONS].count(Outcome) == 1
    assert disposition_of(Reject("x")).bounce
    assert not disposition_of(Hold("x", kind=HoldKind.CONSENT)).bounce
    assert disposition_of(Reject("x")).audit_action == "rejected"
