"""Remove X-Xgate-* headers that came from outside, so no sender can forge our verdicts."""

from __future__ import annotations

from gateway.consent.classify import REQUEST_HEADERS, ConsentRequest
from gateway.mime.headers import remove_headers
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.services import Services

RESULT_HEADER_PREFIX = "x-xgate-"


def is_result_header(name: str) -> bool:
    return name.startswith(RESULT_HEADER_PREFIX)


class StripResultHeadersStage:
    name = "strip_result_headers"

    def run(self, ctx: MessageContext, services: Services) -> None:
        if ctx.direction == Direction.OUTBOUND:
            # A staff member's request to the consent gate, not a verdict: keep what it
            # asks for, then remove it like every other X-Xgate-* field.
            headers = ctx.headers()
            ctx.consent_request = ConsentRequest.from_headers(
                {name: str(headers.get(name, "")) for name in REQUEST_HEADERS})
        stripped = remove_headers(ctx.body, is_result_header)
        if stripped != ctx.body:
            ctx.facts["stripped_result_headers"] = "yes"
        ctx.content = stripped
