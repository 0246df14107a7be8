"""Browsing the audit trail page by page for the console's audit viewer, with filters by
action, actor and date; entries as recorded (personal parts opened, gateway.audit.view).

Newest first, in keyset pages (``before``: the smallest seq shown) of at most
``MAX_PAGE_SIZE``. The action and the dates are asked of the database (indexed, migration
0021). A person as actor is sealed with the entry's personal part, so the actor filter opens
entries one by one: at most ``ACTOR_SCAN_LIMIT`` per page, after which the page says how far
it looked and offers to look further, so no request walks the whole trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from gateway.audit.actions import AuditAction
from gateway.audit.view import ReadableEntry, readable
from gateway.models import AuditEntry
from gateway.query_fields import QueryFields, QueryRefused
from gateway.web.templates import OFFICE_TIME

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
ACTOR_SCAN_LIMIT = 5000
_CHUNK = 500
_MAX_TEXT = 255
_MAX_DIGITS = 15


class BrowseRefused(QueryRefused):
    pass


_FIELDS = QueryFields(max_text=_MAX_TEXT, max_digits=_MAX_DIGITS, refused=BrowseRefused)
_text, _date, _number = _FIELDS.text, _FIELDS.date, _FIELDS.number


@dataclass(frozen=True)
class AuditQuery:
    action: AuditAction | None = None
    actor: str | None = None
    day_from: date | None = None
    day_to: date | None = None
    before: int | None = None
    size: int = DEFAULT_PAGE_SIZE


FIELDS = ("action", "actor", "day_from", "day_to")








def parse_audit_query(raw: Mapping[str, str]) -> AuditQuery:
    day_from, day_to = _date(raw, "day_from"), _date(raw, "day_to")
    if day_from and day_to and day_to < day_from:
        raise BrowseRefused("range_reversed", start=day_from.isoformat(),
                            end=day_to.isoformat())
    action_text = _text(raw, "action")
    action = None
    if action_text is not None:
        try:
            action = AuditAction(action_text)
        except ValueError:
            raise BrowseRefused("unknown_action", value=action_text) from None
    size = _number(raw, "size") or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BrowseRefused("page_size", limit=MAX_PAGE_SIZE)
    actor = _text(raw, "actor")
    return AuditQuery(action, actor.casefold() if actor else None, day_from, day_to,
                      _number(raw, "before"), size)


@dataclass(frozen=True)
class AuditPage:
    entries: list[ReadableEntry]
    # The keyset of the next (older) page; None at the trail's start.
    next_before: int | None
    # The actor filter stopped after ACTOR_SCAN_LIMIT entries with the page not full.
    looked_at: int = 0
    cut_short: bool = False


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), OFFICE_TIME)


def _actor_matches(entry: ReadableEntry, wanted: str) -> bool:
    actor = entry.actor.casefold()
    return actor in (wanted, f"user:{wanted}")


def browse(session: Session, q: AuditQuery) -> AuditPage:
    where: list[ColumnElement[bool]] = []
    if q.action is not None:
        where.append(AuditEntry.action == q.action.value)
    if q.day_from is not None:
        where.append(AuditEntry.at >= _start_of(q.day_from))
    if q.day_to is not None:
        where.append(AuditEntry.at < _start_of(q.day_to + timedelta(days=1)))
    query = select(AuditEntry).where(*where).order_by(AuditEntry.seq.desc())
    if q.actor is None:
        rows = list(session.scalars(query.where(*_before(q.before)).limit(q.size + 1)))
        entries = [readable(session, e) for e in rows[:q.size]]
        more = len(rows) > q.size
        return AuditPage(entries, entries[-1].seq if more and entries else None)
    found: list[ReadableEntry] = []
    looked_at = 0
    before = q.before
    while looked_at < ACTOR_SCAN_LIMIT:
        chunk = list(session.scalars(query.where(*_before(before)).limit(_CHUNK)))
        if not chunk:
            return AuditPage(found, None, looked_at)
        for entry in chunk:
            looked_at += 1
            before = entry.seq
            opened = readable(session, entry)
            if _actor_matches(opened, q.actor):
                if len(found) == q.size:
                    # One more match than the page holds: there is a next page.
                    return AuditPage(found, found[-1].seq, looked_at)
                found.append(opened)
            if looked_at >= ACTOR_SCAN_LIMIT:
                break
    return AuditPage(found, before, looked_at, cut_short=True)


def _before(seq: int | None) -> list[ColumnElement[bool]]:
    return [AuditEntry.seq < seq] if seq is not None else []
