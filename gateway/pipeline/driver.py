"""Runs a message through its stages and turns whatever happens into one result.

This is the only place outcomes are caught. They derive from BaseException, so they pass
every ``except Exception`` on the way here and are caught by name, first. An unexpected error
in a stage does not crash the worker: the message goes to the visible dead-letter state
``failed`` with the stage's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from gateway.models import MessageState
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Defer, Outcome
from gateway.pipeline.stage import Stage
from gateway.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    # None: every stage ran; the recipients' states decide delivered or rejected.
    outcome: Outcome | None
    stage: str | None = None
    internal_error: bool = False

    @property
    def state(self) -> MessageState | None:
        return self.outcome.state if self.outcome else None


StageTimer = Callable[[str, float], None]


def run_pipeline(ctx: MessageContext, stages: Sequence[Stage], services: Services, *,
                 timer: StageTimer | None = None) -> PipelineResult:
    for stage in stages:
        started = time.perf_counter()
        try:
            stage.run(ctx, services)
        except Outcome as outcome:
            return PipelineResult(outcome, stage.name)
        except OperationalError as exc:
            # The database went away or is locked beyond the timeout: transient.
            log.warning("database error in stage %s for %s: %s", stage.name, ctx.queue_id,
                        type(exc).__name__)
            return PipelineResult(Defer(f"database unavailable in stage {stage.name}"),
                                  stage.name)
        except Exception as exc:
            log.exception("internal error in stage %s for %s", stage.name, ctx.queue_id)
            failed = Outcome(f"internal error in stage {stage.name}: {type(exc).__name__}")
            return PipelineResult(failed, stage.name, internal_error=True)
        finally:
            if timer is not None:
                timer(stage.name, time.perf_counter() - started)
    return PipelineResult(None)
