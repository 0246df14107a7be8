"""A mailbox's service levels: reading the form or the CLI's words, checking, storing.

The same parser and checks serve ``xgate mailbox sla`` and the lead's page; a refusal is a
ServiceLevelError naming the field (English message for the CLI, ``key`` and ``values`` for the
page's catalogue ``sla_error.<key>``) and nothing is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from gateway.errors import GatewayError
from gateway.models import StaffUser
from mailboxes.models import Mailbox, MailboxMember, MemberRole
from mailboxes.service_levels.business_hours import LÄNDER, Interval, Week
from mailboxes.service_levels.models import MailboxServiceLevel, TicketServiceLevel

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
# A target longer than a year of business hours is a typing error.
_MAX_TARGET_MINUTES = 2000 * 60


class ServiceLevelError(GatewayError):
    def __init__(self, message: str, *, key: str, **values: object) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class ServiceLevels:
    week: Week
    first_response_minutes: int
    resolution_minutes: int
    warning_minutes: int
    untouched_days: int
    # Empty: the mailbox's leads.
    escalation_contacts: tuple[str, ...] = ()
    # Empty: the consent gate's case-reference pattern.
    case_reference_patterns: tuple[str, ...] = ()


@dataclass
class ServiceLevelForm:
    """What a person typed: every field as text (the page's form, the CLI's options)."""

    hours: dict[str, str] = field(default_factory=dict)   # "mon": "08:00-12:00, 13:00-16:00"
    land: str = "NW"
    closing_days: str = ""
    first_response_hours: str = "8"
    resolution_hours: str = "40"
    warning_hours: str = "2"
    untouched_days: str = "14"
    escalation_contacts: str = ""
    case_reference_patterns: str = ""


def _minute(text: str, day: str) -> int:
    found = _TIME.match(text.strip())
    if found is None:
        raise ServiceLevelError(f"{day}: {text.strip()!r} is not a time like 08:00",
                                key="time", day=day, value=text.strip())
    hours, minutes = int(found.group(1)), int(found.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ServiceLevelError(f"{day}: {text.strip()!r} is not a time of day",
                                key="time", day=day, value=text.strip())
    return hours * 60 + minutes


def parse_day(day: str, text: str) -> tuple[Interval, ...]:
    """"08:00-12:00, 13:00-16:00" (empty: closed) into sorted, non-overlapping intervals."""
    intervals: list[Interval] = []
    for part in (p for p in text.replace(";", ",").split(",") if p.strip()):
        if part.count("-") != 1:
            raise ServiceLevelError(f"{day}: {part.strip()!r} is not an interval like "
                                    "08:00-12:00", key="interval", day=day,
                                    value=part.strip())
        start_text, end_text = part.split("-")
        start, end = _minute(start_text, day), _minute(end_text, day)
        if end <= start:
            raise ServiceLevelError(f"{day}: {part.strip()!r} ends before it begins",
                                    key="end_before_start", day=day, value=part.strip())
        intervals.append(Interval(start, end))
    intervals.sort(key=lambda i: i.start)
    for before, after in pairwise(intervals):
        if after.start < before.end:
            raise ServiceLevelError(f"{day}: the opening hours overlap", key="overlap",
                                    day=day)
    return tuple(intervals)


def format_day(intervals: Sequence[Interval]) -> str:
    def hm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"
    return ", ".join(f"{hm(i.start)}-{hm(i.end)}" for i in intervals)


def _minutes(text: str, field_name: str) -> int:
    """Hours as typed ("4", "1,5") in whole minutes. ``field_name`` is the form field's
    name; the page words it from its catalogue (``sla.field.<name>``)."""
    name = field_name.replace("_", " ")
    try:
        hours = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise ServiceLevelError(f"{name}: {text.strip()!r} is not a number of hours",
                                key="number", field=field_name, value=text.strip()) from None
    if not hours.is_finite() or int(hours * 60) <= 0:
        raise ServiceLevelError(f"{name} must be more than zero hours", key="positive",
                                field=field_name)
    minutes = int(hours * 60)
    if minutes > _MAX_TARGET_MINUTES:
        raise ServiceLevelError(f"{name} is too long", key="too_long", field=field_name)
    return minutes


def _closing_days(text: str) -> frozenset[date]:
    days: set[date] = set()
    for part in (p.strip() for p in text.replace(";", ",").replace("\n", ",").split(",")):
        if not part:
            continue
        try:
            days.add(date.fromisoformat(part))
        except ValueError:
            raise ServiceLevelError(f"closing days: {part!r} is not a date like 2026-12-24",
                                    key="date", value=part) from None
    return frozenset(days)


def _patterns(text: str) -> tuple[str, ...]:
    patterns = tuple(line.strip() for line in text.splitlines() if line.strip())
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error:
            raise ServiceLevelError(f"case-reference pattern {pattern!r} is not a regular "
                                    "expression", key="pattern", value=pattern) from None
        if compiled.fullmatch(""):
            raise ServiceLevelError(f"case-reference pattern {pattern!r} matches empty text",
                                    key="pattern", value=pattern)
    return patterns


def parse_form(form: ServiceLevelForm) -> ServiceLevels:
    land = form.land.strip().upper()
    if land not in LÄNDER:
        raise ServiceLevelError(f"unknown Land {form.land.strip()!r}: use one of "
                                + ", ".join(LÄNDER), key="land", value=form.land.strip())
    unknown = sorted(set(form.hours) - set(DAY_NAMES))
    if unknown:
        raise ServiceLevelError(f"unknown weekday {unknown[0]!r}: use "
                                + ", ".join(DAY_NAMES), key="weekday", value=unknown[0])
    days = tuple(parse_day(d, form.hours.get(d, "")) for d in DAY_NAMES)
    if not any(days):
        raise ServiceLevelError("the office must be open on at least one weekday",
                                key="never_open")
    first = _minutes(form.first_response_hours, "first_response")
    resolution = _minutes(form.resolution_hours, "resolution")
    warning = _minutes(form.warning_hours, "warning")
    if resolution < first:
        raise ServiceLevelError("the resolution target is shorter than the first-response "
                                "target", key="resolution_before_first")
    try:
        untouched = int(form.untouched_days.strip())
    except ValueError:
        raise ServiceLevelError(f"untouched days: {form.untouched_days.strip()!r} is not a "
                                "whole number", key="number", field="untouched_days",
                                value=form.untouched_days.strip()) from None
    if untouched <= 0:
        raise ServiceLevelError("untouched days must be more than zero", key="positive",
                                field="untouched_days")
    contacts = tuple(sorted({c.strip() for c in form.escalation_contacts.replace(";", ",")
                             .split(",") if c.strip()}))
    return ServiceLevels(
        week=Week(days=days, land=land, closing_days=_closing_days(form.closing_days)),
        first_response_minutes=first, resolution_minutes=resolution, warning_minutes=warning,
        untouched_days=untouched, escalation_contacts=contacts,
        case_reference_patterns=_patterns(form.case_reference_patterns))


def to_form(levels: ServiceLevels) -> ServiceLevelForm:
    def hours(minutes: int) -> str:
        return f"{Decimal(minutes) / 60:f}".rstrip("0").rstrip(".")
    return ServiceLevelForm(
        hours={d: format_day(i) for d, i in zip(DAY_NAMES, levels.week.days, strict=True)},
        land=levels.week.land,
        closing_days=", ".join(d.isoformat() for d in sorted(levels.week.closing_days)),
        first_response_hours=hours(levels.first_response_minutes),
        resolution_hours=hours(levels.resolution_minutes),
        warning_hours=hours(levels.warning_minutes),
        untouched_days=str(levels.untouched_days),
        escalation_contacts=", ".join(levels.escalation_contacts),
        case_reference_patterns="\n".join(levels.case_reference_patterns))


def default_form() -> ServiceLevelForm:
    """Monday to Thursday 8-16 with a lunch break, Friday 8-12: a starting point."""
    weekday = "08:00-12:00, 13:00-16:00"
    return ServiceLevelForm(hours={"mon": weekday, "tue": weekday, "wed": weekday,
                                   "thu": weekday, "fri": "08:00-12:00"})


def _from_row(row: MailboxServiceLevel) -> ServiceLevels:
    days = tuple(tuple(Interval(s, e) for s, e in day) for day in json.loads(row.opening_hours))
    return ServiceLevels(
        week=Week(days=days, land=row.land, closing_days=frozenset(
            date.fromisoformat(d) for d in json.loads(row.closing_days))),
        first_response_minutes=row.first_response_minutes,
        resolution_minutes=row.resolution_minutes, warning_minutes=row.warning_minutes,
        untouched_days=row.untouched_days,
        escalation_contacts=tuple(json.loads(row.escalation_contacts or "[]")),
        case_reference_patterns=tuple(json.loads(row.case_reference_patterns or "[]")))


def load(session: Session, mailbox_id: int) -> ServiceLevels | None:
    row = session.get(MailboxServiceLevel, mailbox_id)
    return None if row is None else _from_row(row)


def load_all(session: Session) -> dict[int, ServiceLevels]:
    """Every configured mailbox's service levels, in one statement."""
    return {row.mailbox_id: _from_row(row)
            for row in session.execute(select(MailboxServiceLevel)).scalars()}


def _check_contacts(session: Session, mailbox_id: int, names: Sequence[str]) -> None:
    if not names:
        return
    members = set(session.execute(
        select(StaffUser.username).join(MailboxMember, MailboxMember.user_id == StaffUser.id)
        .where(MailboxMember.mailbox_id == mailbox_id)).scalars())
    for name in names:
        if name not in members:
            raise ServiceLevelError(f"escalation contact {name!r} is not a member of this "
                                    "mailbox", key="contact", value=name)


def save(session: Session, mailbox: Mailbox, levels: ServiceLevels, *, actor: str,
         now: datetime) -> None:
    """Store (or replace) the mailbox's service levels. The tickets' deadlines are computed
    again by the next SLA pass, under the new hours and targets."""
    _check_contacts(session, mailbox.id, levels.escalation_contacts)
    values: Mapping[str, object] = {
        "land": levels.week.land,
        "opening_hours": json.dumps([[[i.start, i.end] for i in day]
                                     for day in levels.week.days]),
        "closing_days": json.dumps(sorted(d.isoformat() for d in levels.week.closing_days)),
        "first_response_minutes": levels.first_response_minutes,
        "resolution_minutes": levels.resolution_minutes,
        "warning_minutes": levels.warning_minutes,
        "untouched_days": levels.untouched_days,
        "escalation_contacts": (json.dumps(list(levels.escalation_contacts))
                                if levels.escalation_contacts else None),
        "case_reference_patterns": (json.dumps(list(levels.case_reference_patterns))
                                    if levels.case_reference_patterns else None),
        "updated_at": now, "updated_by": actor}
    row = session.get(MailboxServiceLevel, mailbox.id)
    if row is None:
        session.add(MailboxServiceLevel(mailbox_id=mailbox.id, **values))
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.execute(delete(TicketServiceLevel).where(
        TicketServiceLevel.mailbox_id == mailbox.id))
    audit.record(session, actor=actor, action=AuditAction.SERVICE_LEVELS_CHANGED,
                 detail={"mailbox": mailbox.address, "land": levels.week.land,
                         "first_response_minutes": levels.first_response_minutes,
                         "resolution_minutes": levels.resolution_minutes})


def contacts_of(session: Session, mailbox_id: int, levels: ServiceLevels) -> list[StaffUser]:
    """Who hears of an escalation: the configured contacts, else the mailbox's leads (only
    active members either way)."""
    query = (select(StaffUser).join(MailboxMember, MailboxMember.user_id == StaffUser.id)
             .where(MailboxMember.mailbox_id == mailbox_id, StaffUser.disabled.is_(False)))
    if levels.escalation_contacts:
        query = query.where(StaffUser.username.in_(levels.escalation_contacts))
    else:
        query = query.where(MailboxMember.role == MemberRole.LEAD.value)
    return list(session.execute(query.order_by(StaffUser.username)).scalars())
