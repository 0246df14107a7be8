"""What a stage is: a named step over the message context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.pipeline.context import MessageContext
    from gateway.services import Services


class Stage(Protocol):
    name: str

    def run(self, ctx: MessageContext, services: Services) -> None:
        """Transform the context, or raise an Outcome."""
        ...
