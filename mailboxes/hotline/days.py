"""The office's calendar day: follow-ups fall due on a day in Germany, not in UTC."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from mailboxes.tickets.states import TicketError

OFFICE_ZONE = ZoneInfo("Europe/Berlin")


def office_day(now: datetime) -> date:
    return now.astimezone(OFFICE_ZONE).date()


def office_time(day: date, at: time) -> datetime:
    """A wall-clock time of the office on ``day``, as an aware datetime."""
    return datetime.combine(day, at, tzinfo=OFFICE_ZONE)


def parse_office_time(text: str) -> datetime:
    """"YYYY-MM-DD HH:MM" (or with a T) on the office's wall clock, as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TicketError(f"{text.strip()!r} is no date and time: use YYYY-MM-DD HH:MM",
                          key="datetime", value=text.strip()) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=OFFICE_ZONE)
