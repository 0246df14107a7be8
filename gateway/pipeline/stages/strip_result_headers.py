"""Remove verdicts that came from outside, so no sender can forge them.

Two kinds: our own X-Xgate-* fields, and Authentication-Results (and ARC-Authentication-
Results) fields in the gateway's name. RFC 8601 section 5 asks an MTA to remove the latter on
the way in: a mail client that trusts its gateway would show a forged "smime=pass" as ours.
The authserv-id is the host name the SMTP listeners greet with (settings.smtp.hostname);
fields of other hosts stay, they are those hosts' statements.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.consent.classify import REQUEST_HEADERS, ConsentRequest
from gateway.mime.headers import claims_authserv_id, field_name, remove_fields
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.services import Services

RESULT_HEADER_PREFIX = "x-xgate-"


def is_result_header(name: str) -> bool:
    return name.startswith(RESULT_HEADER_PREFIX)


def forged_verdict(authserv_id: str) -> Callable[[bytes], bool]:
    """A test for header fields that claim to be the gateway's verdicts."""
    def forged(field: bytes) -> bool:
        return is_result_header(field_name(field)) or claims_authserv_id(field, authserv_id)
    return forged


def strip_forged_verdicts(data: bytes, authserv_id: str) -> bytes:
    """``data`` without X-Xgate-* fields and Authentication-Results in our name."""
    return remove_fields(data, forged_verdict(authserv_id))


class StripResultHeadersStage:
    name = "strip_result_headers"

    def run(self, ctx: MessageContext, services: Services) -> None:
        if ctx.direction == Direction.OUTBOUND:
            # A staff member's request to the consent gate, not a verdict: keep what it
            # asks for, then remove it like every other X-Xgate-* field.
            headers = ctx.headers()
            ctx.consent_request = ConsentRequest.from_headers(
                {name: str(headers.get(name, "")) for name in REQUEST_HEADERS})
        stripped = strip_forged_verdicts(ctx.body, services.settings.smtp.hostname)
        if stripped != ctx.body:
            ctx.facts["stripped_result_headers"] = "yes"
        ctx.content = stripped
