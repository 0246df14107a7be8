"""Business-hours arithmetic: how much of a stretch of time the office was open, and when a
number of open hours, counted from a start, runs out.

The office's week: opening intervals per weekday (several a day, e.g. 8-12 and 13-16), closed
on the public holidays of its Land (the ``holidays`` package, which knows which Land keeps
Fronleichnam or Reformationstag) and on its own closing days. Wall-clock times are read in
Europe/Berlin, so an interval is open as long as the clock on the office's wall says,
whichever side of a DST change it lies; all results are aware UTC times.

A ticket's clock stops while it waits on the citizen: ``paused`` are (start, end) stretches,
end None meaning "still paused", that do not count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

OFFICE_TIME = ZoneInfo("Europe/Berlin")
LÄNDER = ("BB", "BE", "BW", "BY", "HB", "HE", "HH", "MV", "NI", "NW", "RP", "SH", "SL", "SN",
          "ST", "TH")
MINUTES_PER_DAY = 24 * 60
# No office is closed this long; a calendar that finds no open minute in it is a fault.
_SEARCH_DAYS = 3 * 366

Pause = tuple[datetime, datetime | None]


@dataclass(frozen=True)
class Interval:
    """Open from ``start`` to ``end`` minutes after local midnight (end 1440: to midnight)."""

    start: int
    end: int


@dataclass(frozen=True)
class Week:
    """Opening intervals for Monday (0) to Sunday (6), the Land, the office's closing days."""

    days: tuple[tuple[Interval, ...], ...]
    land: str
    closing_days: frozenset[date] = field(default_factory=frozenset)
    # The open stretches of each day, worked out once (a pass computes thousands of
    # deadlines over the same days); not part of the week's identity.
    _open: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False)

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        if day in self.closing_days or _is_holiday(self.land, day):
            return ()
        return self.days[day.weekday()]


@lru_cache(maxsize=64)
def _holidays_of(land: str, year: int) -> frozenset[date]:
    # Imported at the first deadline, not with this module: every worker process's scheduler
    # imports the SLA passes, and the package costs about 3 MiB there (and another 8 once
    # asked, as it loads every country's calendar for one) in workers that never compute a
    # deadline.
    import holidays

    return frozenset(holidays.country_holidays("DE", subdiv=land, years=year))


def _is_holiday(land: str, day: date) -> bool:
    return day in _holidays_of(land, day.year)


def _at(day: date, minute: int) -> datetime:
    """``minute`` after the office's midnight of ``day``, on the wall clock, in UTC."""
    if minute >= MINUTES_PER_DAY:
        day, minute = day + timedelta(days=1), minute - MINUTES_PER_DAY
    local = datetime.combine(day, time(minute // 60, minute % 60), OFFICE_TIME)
    return local.astimezone(UTC)


def _open_on(week: Week, day: date) -> tuple[tuple[datetime, datetime], ...]:
    found = week._open.get(day)
    if found is None:
        found = tuple((_at(day, i.start), _at(day, i.end)) for i in week.intervals_on(day))
        week._open[day] = found
    return found


def _minus_pauses(start: datetime, end: datetime, paused: Sequence[Pause]
                  ) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) without the paused stretches (sorted by start, not overlapping)."""
    cursor = start
    for p_start, p_end in paused:
        if p_end is not None and p_end <= cursor:
            continue
        if p_start >= end:
            break
        if p_start > cursor:
            yield cursor, p_start
        if p_end is None:
            return
        cursor = max(cursor, p_end)
        if cursor >= end:
            return
    if cursor < end:
        yield cursor, end


def _open_from(week: Week, start: datetime, paused: Sequence[Pause]
               ) -> Iterator[tuple[datetime, datetime]]:
    """Open, unpaused stretches from ``start`` on, in order."""
    day = start.astimezone(OFFICE_TIME).date() - timedelta(days=1)
    last = day + timedelta(days=_SEARCH_DAYS)
    ordered = sorted(paused, key=lambda p: p[0])
    # A pause that has not ended stops the clock for good: nothing after it is open.
    stopped = min((p_start for p_start, p_end in ordered if p_end is None), default=None)
    while day <= last:
        for o_start, o_end in _open_on(week, day):
            if stopped is not None and o_start >= stopped:
                return
            if o_end <= start:
                continue
            yield from _minus_pauses(max(o_start, start), o_end, ordered)
        day += timedelta(days=1)


def business_time_between(week: Week, a: datetime, b: datetime,
                          paused: Sequence[Pause] = ()) -> timedelta:
    """Open, unpaused time from ``a`` to ``b`` (zero if ``b`` is not after ``a``)."""
    total = timedelta(0)
    if b <= a:
        return total
    for s, e in _open_from(week, a, paused):
        if s >= b:
            break
        total += min(e, b) - s
    return total


def add_business_time(week: Week, start: datetime, duration: timedelta,
                      paused: Sequence[Pause] = ()) -> datetime | None:
    """When ``duration`` of open, unpaused time from ``start`` has passed; None while a pause
    that has not ended stops the clock first."""
    left = duration
    if left <= timedelta(0):
        return start
    for s, e in _open_from(week, start, paused):
        if e - s >= left:
            return s + left
        left -= e - s
    if any(end is None for _, end in paused):
        return None
    raise ValueError("the opening hours leave no open time within three years")


def subtract_business_time(week: Week, end: datetime, duration: timedelta) -> datetime:
    """The latest start from which ``duration`` of open time has passed by ``end`` (no pauses):
    what was opened at or before it is due by ``end``. For set-based passes."""
    left = duration
    day = end.astimezone(OFFICE_TIME).date() + timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        for o_start, o_end in reversed(_open_on(week, day)):
            if o_start >= end:
                continue
            span = min(o_end, end) - o_start
            if span >= left:
                return min(o_end, end) - left
            left -= span
        day -= timedelta(days=1)
    raise ValueError("the opening hours leave no open time within three years")
