"""Time as an injectable dependency, so tests move time instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.models import utcnow

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return utcnow()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
