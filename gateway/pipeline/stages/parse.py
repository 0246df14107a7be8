"""Parse the MIME structure; quarantine what cannot be parsed reliably.

A structure the parser had to guess at could hide a part from the scanner, so guessing fails
closed: the message is kept as it came and quarantined with the reason.

One full parse per message where possible: an inbound message whose top-level entity is a
single part (an S/MIME envelope, a plain text mail) has no part boundaries the parser could
guess at, so the parse stage reads only its header block, and the full parse is made once,
of what the decrypt and verify stages leave, by the reparse stage. A multipart or an attached
message at the top is parsed in full at once, as before: its boundaries are checked before
any stage takes it apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from email import errors
from email.message import EmailMessage, Message

from crypto.canonical import encode_binary_bodies
from gateway.delivery.notices import Bilingual
from gateway.mime.parsed import parse_message
from gateway.models import Direction
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Quarantine
from gateway.services import Services
from scanning.parts import MimeLimits, raw_structure

# Defects that mean the part boundaries are not what the sender's software meant.
STRUCTURAL_DEFECTS: tuple[type[errors.MessageDefect], ...] = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.MissingHeaderBodySeparatorDefect,
)


def parse_checked(data: bytes, leaf_bodies: Sequence[tuple[int, int]] = ()) -> EmailMessage:
    """Parse ``data``; raise Quarantine if the structure had to be guessed at.

    Used on what arrived and again on what decryption and signature unwrapping produce.
    ``leaf_bodies``: where the raw structure check found leaf bodies in ``data``
    (``gateway.mime.parsed.parse_message``).
    """
    try:
        parsed = parse_message(data, leaf_bodies)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a verdict, not a crash
        raise Quarantine(f"unparseable message: {type(exc).__name__}") from None
    _refuse_defects([part for part in parsed.walk()])
    return parsed


def _refuse_defects(entities: list[Message]) -> None:
    problems = sorted({type(d).__name__ for part in entities for d in part.defects
                       if isinstance(d, STRUCTURAL_DEFECTS)})
    if problems:
        raise Quarantine("malformed MIME structure: " + ", ".join(problems))


def check_structure(ctx: MessageContext, services: Services) -> None:
    """Refuse a structure too big or too deep before the email package sees it: its parser
    takes time that grows with nesting depth times body size (minutes for a hostile 50 MB
    message), while this check reads the raw lines once (and once only per byte string)."""
    limits = MimeLimits.from_settings(services.settings.scanning)
    problem = ctx.structure(lambda data: raw_structure(data, limits)).problem
    if problem is not None:
        raise Quarantine(f"unscannable: {problem}",
                         notice=Bilingual(
                             "Der Aufbau der Nachricht (MIME) ist zu verschachtelt, um "
                             "geprüft zu werden.",
                             "the message's MIME structure is too complex to be checked"))


def _leaf_bodies(ctx: MessageContext) -> tuple[tuple[int, int], ...]:
    """Where the structure check found the leaf bodies of ``ctx.body``; none if it looked at
    other bytes (binary bodies re-encoded since)."""
    structure = ctx.known_structure()
    return structure.leaf_bodies if structure is not None else ()


def _single_part(headers: Message) -> bool:
    """Whether the parser would read the body of this top-level entity as one leaf: only
    multipart/* and message/* bodies are parsed into entities (email.feedparser)."""
    return headers.get_content_maintype() not in ("multipart", "message")


class ParseStage:
    name = "parse"

    def run(self, ctx: MessageContext, services: Services) -> None:
        check_structure(ctx, services)
        try:
            headers = ctx.headers()
            single = _single_part(headers)
        except Exception as exc:  # noqa: BLE001 - as in parse_checked
            raise Quarantine(f"unparseable message: {type(exc).__name__}") from None
        if single and ctx.direction == Direction.INBOUND:
            # The only structural defect such a message can have is in its header block,
            # which the header-only parse reads exactly as the full parse would. Inbound
            # only: the inbound pipelines reparse after decryption; the outbound ones have
            # no such stage, and its scan and consent stages share this parse.
            _refuse_defects([headers])
            ctx.facts["mime_type"] = headers.get_content_type()
            ctx.unparsed_body = ctx.body
            return
        ctx.parsed = parse_checked(ctx.body, _leaf_bodies(ctx))
        ctx.facts["mime_type"] = ctx.parsed.get_content_type()


class ReparseStage:
    """Parse again what decryption and signature checks produced (they leave it unparsed),
    with the same check: a malformed inner structure is quarantined like an outer one.

    Inside an encryption a partner may send bodies in Content-Transfer-Encoding binary
    (RFC 8551 3.1.2), which no SMTP relay without BINARYMIME carries intact. With the
    signatures checked, they are re-encoded in base64 here, so that what is scanned, filed
    and relayed is one and the same message, and one that any relay carries intact.
    """

    name = "reparse"

    def run(self, ctx: MessageContext, services: Services) -> None:
        if ctx.parsed is not None:
            return
        if ctx.unparsed_body is ctx.body:
            # Nothing was opened: the message as it came, whose structure the parse stage
            # checked already; parsed in full here, once, as the parse stage would have.
            ctx.parsed = parse_checked(ctx.body, _leaf_bodies(ctx))
            return
        check_structure(ctx, services)
        ctx.content = encode_binary_bodies(ctx.body)
        ctx.parsed = parse_checked(ctx.body, _leaf_bodies(ctx))
        ctx.facts["inner_mime_type"] = ctx.parsed.get_content_type()
