"""The pipelines: tuples of stage names, looked up in one registry.

Later features add stages here (decrypt, verify, scan, consent, sign, encrypt) without
touching the driver.
"""

from __future__ import annotations

from gateway.models import Direction
from gateway.pipeline.stage import Stage
from gateway.pipeline.stages.deliver import DeliverStage
from gateway.pipeline.stages.parse import ParseStage
from gateway.pipeline.stages.route import RouteStage
from gateway.pipeline.stages.strip_result_headers import StripResultHeadersStage

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (ParseStage(), StripResultHeadersStage(), RouteStage(), DeliverStage())
}

PIPELINES: dict[Direction, tuple[str, ...]] = {
    Direction.INBOUND: ("strip_result_headers", "parse", "route", "deliver"),
    Direction.OUTBOUND: ("strip_result_headers", "parse", "route", "deliver"),
}


def stages_for(direction: Direction) -> list[Stage]:
    return [STAGES[name] for name in PIPELINES[direction]]
