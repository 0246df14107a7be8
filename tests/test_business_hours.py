"""Business-hours arithmetic (mailboxes.service_levels.business_hours), table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mailboxes.service_levels.business_hours import (
    OFFICE_TIME,
    Interval,
    Week,
    add_business_time,
    business_time_between,
    subtract_business_time,
)

_MORNING, _AFTERNOON = Interval(8 * 60, 12 * 60), Interval(13 * 60, 16 * 60)
# Monday to Thursday 8-12 and 13-16, Friday 8-12, closed at the weekend.
_OFFICE = ((_MORNING, _AFTERNOON),) * 4 + ((_MORNING,), (), ())
# A hotline open day and night, every day: shows DST nights hour by hour.
_ALWAYS = ((Interval(0, 24 * 60),),) * 7


def week(land: str = "NW", days: tuple[tuple[Interval, ...], ...] = _OFFICE,
         closing: frozenset[date] = frozenset()) -> Week:
    return Week(days=days, land=land, closing_days=closing)


def local(text: str) -> datetime:
    """An office wall-clock time ("2026-06-03 15:00") as an aware UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=OFFICE_TIME).astimezone(UTC)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


ADD_CASES = [
    # (why, week, start, duration, expected end)
    ("within one morning", week(), "2026-06-01 09:00", h(2), "2026-06-01 11:00"),
    ("over the lunch break", week(), "2026-06-01 11:00", h(2), "2026-06-01 14:00"),
    ("over the weekend", week(), "2026-11-20 11:00", h(2), "2026-11-23 09:00"),
    ("Fronleichnam is a holiday in NW", week("NW"), "2026-06-03 15:00", h(2),
     "2026-06-05 09:00"),
    ("Fronleichnam is a working day in NI", week("NI"), "2026-06-03 15:00", h(2),
     "2026-06-04 09:00"),
    ("Reformationstag 2025 (a Friday) is a holiday in NI", week("NI"), "2025-10-30 15:00",
     h(2), "2025-11-03 09:00"),
    ("Reformationstag 2025 is a working day in NW", week("NW"), "2025-10-30 15:00", h(2),
     "2025-10-31 09:00"),
    ("opened on a Saturday: counts from Monday's opening", week(), "2026-11-21 10:00", h(1),
     "2026-11-23 09:00"),
    ("opened in the evening: counts from the next morning", week(), "2026-11-24 18:00",
     h(0.5), "2026-11-25 08:30"),
    ("opened before opening", week(), "2026-11-24 06:00", h(1), "2026-11-24 09:00"),
    ("an office closing day", week(closing=frozenset({date(2026, 11, 25)})),
     "2026-11-24 15:00", h(2), "2026-11-26 09:00"),
    ("office hours over the spring DST weekend keep the wall clock", week(),
     "2026-03-27 11:00", h(2), "2026-03-30 09:00"),
    ("office hours over the autumn DST weekend keep the wall clock", week(),
     "2026-10-23 11:00", h(2), "2026-10-26 09:00"),
    ("spring DST night: 02:00-03:00 does not exist", week(days=_ALWAYS),
     "2026-03-29 01:00", h(2), "2026-03-29 04:00"),
    ("autumn DST night: 02:00-03:00 happens twice", week(days=_ALWAYS),
     "2026-10-25 01:00", h(3), "2026-10-25 03:00"),
    ("zero duration is the start", week(), "2026-11-21 10:00", h(0), "2026-11-21 10:00"),
]


@pytest.mark.parametrize(("why", "week_", "start", "duration", "expected"), ADD_CASES,
                         ids=[c[0] for c in ADD_CASES])
def test_add_business_time(why: str, week_: Week, start: str, duration: timedelta,
                           expected: str) -> None:
    assert add_business_time(week_, local(start), duration) == local(expected)


BETWEEN_CASES = [
    ("one working day", week(), "2026-11-23 00:00", "2026-11-24 00:00", h(7)),
    ("a whole week (Friday short)", week(), "2026-11-23 00:00", "2026-11-30 00:00", h(32)),
    ("the week of Fronleichnam in NW", week("NW"), "2026-06-01 00:00", "2026-06-08 00:00",
     h(25)),
    ("the week of Fronleichnam in NI", week("NI"), "2026-06-01 00:00", "2026-06-08 00:00",
     h(32)),
    ("a weekend only", week(), "2026-11-21 00:00", "2026-11-23 00:00", h(0)),
    ("the spring DST day has 23 hours", week(days=_ALWAYS), "2026-03-29 00:00",
     "2026-03-30 00:00", h(23)),
    ("the autumn DST day has 25 hours", week(days=_ALWAYS), "2026-10-25 00:00",
     "2026-10-26 00:00", h(25)),
    ("end before start", week(), "2026-11-24 12:00", "2026-11-24 09:00", h(0)),
    ("part of an interval", week(), "2026-11-24 11:30", "2026-11-24 13:15", h(0.75)),
]


@pytest.mark.parametrize(("why", "week_", "a", "b", "expected"), BETWEEN_CASES,
                         ids=[c[0] for c in BETWEEN_CASES])
def test_business_time_between(why: str, week_: Week, a: str, b: str,
                               expected: timedelta) -> None:
    assert business_time_between(week_, local(a), local(b)) == expected


PAUSE_CASES = [
    # (why, start, pauses, duration, expected end or None)
    ("paused Monday 10:00 to Tuesday 10:00", "2026-11-23 08:00",
     [("2026-11-23 10:00", "2026-11-24 10:00")], h(4), "2026-11-24 12:00"),
    ("paused outside opening hours changes nothing", "2026-11-23 08:00",
     [("2026-11-23 18:00", "2026-11-24 07:00")], h(8), "2026-11-24 09:00"),
    ("two pauses", "2026-11-23 08:00",
     [("2026-11-23 09:00", "2026-11-23 10:00"), ("2026-11-23 11:00", "2026-11-23 14:00")],
     h(3), "2026-11-23 15:00"),
    ("still paused: no due time", "2026-11-23 08:00", [("2026-11-23 09:00", None)], h(2),
     None),
    ("still paused, but due before the pause", "2026-11-23 08:00",
     [("2026-11-23 11:00", None)], h(2), "2026-11-23 10:00"),
]


@pytest.mark.parametrize(("why", "start", "pauses", "duration", "expected"), PAUSE_CASES,
                         ids=[c[0] for c in PAUSE_CASES])
def test_pause_and_resume(why: str, start: str, pauses: list[tuple[str, str | None]],
                          duration: timedelta, expected: str | None) -> None:
    paused = [(local(a), local(b) if b else None) for a, b in pauses]
    due = add_business_time(week(), local(start), duration, paused)
    assert due == (local(expected) if expected else None)
    if due is not None:
        assert business_time_between(week(), local(start), due, paused) == duration


@pytest.mark.parametrize(("why", "week_", "start", "duration", "expected"), ADD_CASES,
                         ids=[c[0] for c in ADD_CASES])
def test_subtract_is_the_inverse_of_add(why: str, week_: Week, start: str,
                                        duration: timedelta, expected: str) -> None:
    if duration <= timedelta(0):
        return
    latest = subtract_business_time(week_, local(expected), duration)
    # Opened at ``latest`` or earlier: due by ``expected``; the same open time as from start.
    assert business_time_between(week_, latest, local(expected)) == duration
    assert latest >= local(start)


def test_a_week_without_open_hours_is_an_error_not_a_hang() -> None:
    closed = Week(days=((),) * 7, land="NW")
    with pytest.raises(ValueError, match="no open time"):
        add_business_time(closed, local("2026-11-23 08:00"), h(1))
