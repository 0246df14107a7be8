"""Ticket numbers: XG-YYYY-NNNNNN, one counter per year, no gaps, no duplicates.

The counter row is taken with ``UPDATE ... RETURNING`` in the caller's transaction: the
update locks the row on PostgreSQL (a concurrent allocation waits for our commit or
rollback) and SQLite's writers run one at a time (BEGIN IMMEDIATE), so the number and the
ticket that uses it commit together or not at all, and a rolled-back ticket gives its
number back.
"""

from __future__ import annotations

import re

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.db import table_of
from mailboxes.tickets.models import TicketCounter

PREFIX = "XG"
NUMBER_PATTERN = re.compile(r"\bXG-(\d{4})-(\d{6})\b", re.IGNORECASE)

_counters = table_of(TicketCounter)
_NEXT = (update(_counters).where(_counters.c.year == bindparam("y"))
         .values(last=_counters.c.last + 1).returning(_counters.c.last))
_FIRST = insert(_counters)


def format_number(year: int, serial: int) -> str:
    return f"{PREFIX}-{year:04d}-{serial:06d}"


def allocate_number(session: Session, year: int) -> str:
    serial = session.execute(_NEXT, {"y": year}).scalar_one_or_none()
    if serial is None:
        try:
            with session.begin_nested():
                session.execute(_FIRST, {"year": year, "last": 1})
            serial = 1
        except IntegrityError:
            # Another transaction opened the year at the same moment; take the next one.
            serial = session.execute(_NEXT, {"y": year}).scalar_one()
    return format_number(year, int(serial))


def numbers_in(text: str) -> list[str]:
    """Ticket numbers named in a subject, in order, normalised to upper case."""
    return [format_number(int(y), int(n)) for y, n in NUMBER_PATTERN.findall(text)]
