"""What a scan concluded about a message, with the reason an admin needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    CLEAN = "clean"  # nothing found: delivered
    INFECTED = "infected"  # a signature matched: quarantined
    # Encrypted content we cannot open, a limit exceeded, clamd reporting truncation:
    # quarantined, since "nothing found" in what could not be looked at is no verdict at all.
    UNSCANNABLE = "unscannable"
    # An attachment type the office does not accept (executables, scripts, macros).
    BLOCKED = "blocked"
    # The scanner was down, timed out or answered garbage: the message waits (fail closed).
    ERROR = "error"


# Most severe first. Malware outranks everything: a blocked type that is also infected must
# read "infected", or two admins releasing "an executable" would release malware.
SEVERITY = (Verdict.INFECTED, Verdict.UNSCANNABLE, Verdict.BLOCKED)


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    reason: str  # the signature's name, the limit, the type
    part: str | None = None  # which part, e.g. "2 attachment bericht.zip"

    @property
    def detail(self) -> str:
        where = f" in {self.part}" if self.part else ""
        return f"{self.verdict.value}: {self.reason}{where}"


@dataclass(frozen=True)
class ScanResult:
    verdict: Verdict
    reason: str = ""  # the most severe finding's reason
    part: str | None = None  # and where it was
    findings: tuple[Finding, ...] = ()  # every finding, most severe first
    # What was decrypted on the way, and how (for the message's facts and the audit trail).
    opened: tuple[str, ...] = ()

    @classmethod
    def of(cls, findings: Iterable[Finding], opened: Iterable[str] = ()) -> ScanResult:
        ranked = sorted(dict.fromkeys(findings), key=lambda f: SEVERITY.index(f.verdict))
        if not ranked:
            return cls(Verdict.CLEAN, opened=tuple(opened))
        top = ranked[0]
        return cls(top.verdict, top.reason, top.part, tuple(ranked), tuple(opened))

    @property
    def clean(self) -> bool:
        return self.verdict == Verdict.CLEAN

    @property
    def detail(self) -> str:
        """Every finding, most severe first: "infected: X in 2 …; blocked: executable in 2 …"."""
        if self.findings:
            return "; ".join(finding.detail for finding in self.findings)
        where = f" in {self.part}" if self.part else ""
        return f"{self.verdict.value}: {self.reason}{where}" if self.reason else self.verdict.value
