"""The office's calendar day: follow-ups fall due on a day in Germany, not in UTC."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

OFFICE_ZONE = ZoneInfo("Europe/Berlin")


def office_day(now: datetime) -> date:
    return now.astimezone(OFFICE_ZONE).date()


def office_time(day: date, at: time) -> datetime:
    """A wall-clock time of the office on ``day``, as an aware datetime."""
    return datetime.combine(day, at, tzinfo=OFFICE_ZONE)
