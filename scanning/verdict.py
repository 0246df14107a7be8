"""What a scan concluded about a message, with the reason an admin needs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    CLEAN = "clean"  # nothing found: delivered
    INFECTED = "infected"  # a signature matched: quarantined
    # Encrypted archive, a limit exceeded, clamd reporting truncation: quarantined, since
    # "nothing found" in what could not be looked at is no verdict at all.
    UNSCANNABLE = "unscannable"
    # An attachment type the office does not accept (executables, scripts, macros).
    BLOCKED = "blocked"
    # The scanner was down, timed out or answered garbage: the message waits (fail closed).
    ERROR = "error"


@dataclass(frozen=True)
class ScanResult:
    verdict: Verdict
    reason: str = ""  # the signature's name, the limit, the type, or the error
    part: str | None = None  # which part, e.g. "2 attachment bericht.zip"

    @property
    def clean(self) -> bool:
        return self.verdict == Verdict.CLEAN

    @property
    def detail(self) -> str:
        where = f" in {self.part}" if self.part else ""
        return f"{self.verdict.value}: {self.reason}{where}" if self.reason else self.verdict.value
