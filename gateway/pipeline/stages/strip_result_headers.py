"""Remove X-Xgate-* headers that came from outside, so no sender can forge our verdicts."""

from __future__ import annotations

from gateway.mime.headers import remove_headers
from gateway.pipeline.context import MessageContext
from gateway.services import Services

RESULT_HEADER_PREFIX = "x-xgate-"


def is_result_header(name: str) -> bool:
    return name.startswith(RESULT_HEADER_PREFIX)


class StripResultHeadersStage:
    name = "strip_result_headers"

    def run(self, ctx: MessageContext, services: Services) -> None:
        stripped = remove_headers(ctx.body, is_result_header)
        if stripped != ctx.body:
            ctx.facts["stripped_result_headers"] = "yes"
        ctx.content = stripped
