"""Parse the MIME structure; quarantine what cannot be parsed reliably.

A structure the parser had to guess at could hide a part from the scanner, so guessing fails
closed: the message is kept as it came and quarantined with the reason.
"""

from __future__ import annotations

from email import errors, policy
from email.message import EmailMessage
from email.parser import BytesParser

from crypto.canonical import encode_binary_bodies
from gateway.delivery.notices import Bilingual
from gateway.pipeline.context import MessageContext
from gateway.pipeline.outcomes import Quarantine
from gateway.services import Services
from scanning.parts import MimeLimits, check_raw_structure

# Defects that mean the part boundaries are not what the sender's software meant.
STRUCTURAL_DEFECTS: tuple[type[errors.MessageDefect], ...] = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.MissingHeaderBodySeparatorDefect,
)


def parse_checked(data: bytes) -> EmailMessage:
    """Parse ``data``; raise Quarantine if the structure had to be guessed at.

    Used on what arrived and again on what decryption and signature unwrapping produce.
    """
    try:
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        problems = sorted({type(d).__name__ for part in parsed.walk() for d in part.defects
                           if isinstance(d, STRUCTURAL_DEFECTS)})
    except Exception as exc:  # noqa: BLE001 - any parser failure is a verdict, not a crash
        raise Quarantine(f"unparseable message: {type(exc).__name__}") from None
    if problems:
        raise Quarantine("malformed MIME structure: " + ", ".join(problems))
    assert isinstance(parsed, EmailMessage)
    return parsed


def check_structure(data: bytes, services: Services) -> None:
    """Refuse a structure too big or too deep before the email package sees it: its parser
    takes time that grows with nesting depth times body size (minutes for a hostile 50 MB
    message), while this check reads the raw lines once."""
    problem = check_raw_structure(data, MimeLimits.from_settings(services.settings.scanning))
    if problem is not None:
        raise Quarantine(f"unscannable: {problem}",
                         notice=Bilingual(
                             "Der Aufbau der Nachricht (MIME) ist zu verschachtelt, um "
                             "geprüft zu werden.",
                             "the message's MIME structure is too complex to be checked"))


class ParseStage:
    name = "parse"

    def run(self, ctx: MessageContext, services: Services) -> None:
        check_structure(ctx.body, services)
        ctx.parsed = parse_checked(ctx.body)
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
        if ctx.parsed is None:
            check_structure(ctx.body, services)
            ctx.content = encode_binary_bodies(ctx.body)
            ctx.parsed = parse_checked(ctx.body)
            ctx.facts["inner_mime_type"] = ctx.parsed.get_content_type()
