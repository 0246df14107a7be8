"""Sending a pickup code on a second channel (SMS): an interface, and a test sender.

No provider is wired in: an office that has one implements ``CodeSender`` for it. The text
holds the code and the office's name only, never the message or the link (the link came by
mail; both together open the item).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class CodeSendError(Exception):
    """The code could not be sent; the caseworker tells it another way."""


class CodeSender(Protocol):
    def send(self, number: str, text: str) -> None:
        """Send ``text`` to the phone ``number``, or raise CodeSendError."""


def code_text(code: str, office: str) -> str:
    return (f"{office}: Ihr Abholcode lautet {code}. / Your pickup code is {code}.")


@dataclass
class RecordingCodeSender:
    """Keeps what it was asked to send (tests); ``fail`` makes every send raise."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False

    def send(self, number: str, text: str) -> None:
        if self.fail:
            raise CodeSendError(f"could not send to {number}")
        self.sent.append((number, text))


def send_code(sender: CodeSender, number: str, code: str, *, office: str) -> None:
    sender.send(number, code_text(code, office))
