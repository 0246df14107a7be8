"""Searching the transfers: by case reference, address (sender or recipient), partner, shared
mailbox, date range, state, scan verdict and direction; newest first, a page at a time.

Paging is by keyset (``before``: the smallest id of the page shown), never an offset, and a
page holds at most ``MAX_PAGE_SIZE`` rows, so a search over a huge range costs one page. A
search by address asks the sender and the recipients separately (each through its own index,
newest first, at most one page each) and merges the two, which stays fast however many
messages an address has (benchmarks/console_transfers.py).

Bad input raises SearchRefused with a catalogue key (``transfers.refused.<key>``) and the
values for its text; nothing is searched then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, union
from sqlalchemy.orm import Session, aliased

from gateway.keydir.models import Partner, PartnerAddress
from gateway.models import Direction, Message, MessageState, Recipient
from gateway.policy.consent import normalise_case
from gateway.query_fields import QueryFields, QueryRefused
from gateway.web.templates import OFFICE_TIME
from mailboxes.models import Mailbox
from scanning.verdict import Verdict

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Ids in a search form are digits only, and small enough for every database.
_MAX_ID_DIGITS = 15
_MAX_TEXT = 320


class SearchRefused(QueryRefused):
    pass


_FIELDS = QueryFields(max_text=_MAX_TEXT, max_digits=_MAX_ID_DIGITS, refused=SearchRefused,
                      collapse_spaces=True)
_text, _date, _number = _FIELDS.text, _FIELDS.date, _FIELDS.number


@dataclass(frozen=True)
class TransferQuery:
    case_reference: str | None = None
    address: str | None = None
    partner: str | None = None
    mailbox_id: int | None = None
    received_from: date | None = None  # on the office's calendar, inclusive
    received_to: date | None = None  # inclusive
    state: MessageState | None = None
    verdict: Verdict | None = None
    direction: Direction | None = None
    before: int | None = None
    size: int = DEFAULT_PAGE_SIZE

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in (
            "case_reference", "address", "partner", "mailbox_id", "received_from",
            "received_to", "state", "verdict", "direction"))


FIELDS = ("case_reference", "address", "partner", "mailbox", "received_from", "received_to",
          "state", "verdict", "direction")




_E = TypeVar("_E", MessageState, Verdict, Direction)


def _choice(raw: Mapping[str, str], name: str, enum: type[_E]) -> _E | None:
    value = _text(raw, name)
    if value is None:
        return None
    try:
        return enum(value.lower())
    except ValueError:
        raise SearchRefused(f"unknown_{name}", value=value) from None






def parse_query(raw: Mapping[str, str]) -> TransferQuery:
    """The search form's fields (all optional) as a query, or SearchRefused."""
    received_from, received_to = _date(raw, "received_from"), _date(raw, "received_to")
    if received_from and received_to and received_to < received_from:
        raise SearchRefused("range_reversed", start=received_from.isoformat(),
                            end=received_to.isoformat())
    size = _number(raw, "size") or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise SearchRefused("page_size", limit=MAX_PAGE_SIZE)
    case = _text(raw, "case_reference")
    address = _text(raw, "address")
    return TransferQuery(
        case_reference=normalise_case(case) if case else None,
        address=address.lower() if address else None,
        partner=_text(raw, "partner"), mailbox_id=_number(raw, "mailbox"),
        received_from=received_from, received_to=received_to,
        state=_choice(raw, "state", MessageState), verdict=_choice(raw, "verdict", Verdict),
        direction=_choice(raw, "direction", Direction), before=_number(raw, "before"),
        size=size)


@dataclass(frozen=True)
class TransferRow:
    id: int
    queue_id: str
    direction: Direction
    state: MessageState
    received_at: datetime
    mail_from: str
    recipients: tuple[str, ...]
    case_reference: str | None
    verdict: str | None  # the scan's verdict word (clean, infected, ...), if scanned
    partner: str | None  # the partner the inbound policy found


@dataclass(frozen=True)
class TransferPage:
    rows: list[TransferRow]
    # The keyset of the next (older) page; None on the last page.
    next_before: int | None
    query: TransferQuery = field(default_factory=TransferQuery)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), OFFICE_TIME)


def _address_matches(column: Any, patterns: Sequence[str]) -> ColumnElement[bool]:
    """``column`` names one of the partner's addresses or an address in one of its domains."""
    lowered = func.lower(column)
    conditions = [lowered == p if "@" in p else lowered.like(f"%@{p}") for p in patterns]
    return or_(*conditions) if conditions else false()


def _conditions(session: Session, q: TransferQuery, primary: str) -> list[ColumnElement[bool]]:
    """Every filter on ``Message`` but the one searched through the address indexes
    (``primary``: "address", "mailbox", "partner" or "")."""
    where: list[ColumnElement[bool]] = []
    if q.case_reference is not None:
        where.append(Message.case_reference == q.case_reference)
    if q.direction is not None:
        where.append(Message.direction == q.direction)
    if q.state is not None:
        where.append(Message.state == q.state)
    if q.received_from is not None:
        where.append(Message.received_at >= _start_of(q.received_from))
    if q.received_to is not None:
        where.append(Message.received_at < _start_of(q.received_to + timedelta(days=1)))
    if q.verdict is not None:
        # The facts are JSON with sorted keys; the scan's detail starts with its verdict.
        where.append(Message.facts.like(f'%"scan": "{q.verdict.value}%'))
    if q.before is not None:
        where.append(Message.id < q.before)
    if q.mailbox_id is not None and primary != "mailbox":
        where.append(_sent_or_received(_mailbox_patterns(session, q.mailbox_id)))
    if q.partner is not None and primary != "partner":
        where.append(_sent_or_received(_partner_patterns(session, q.partner)))
    return where


def _sent_or_received(patterns: Sequence[str]) -> ColumnElement[bool]:
    """Sent from, or to, one of ``patterns`` (addresses or domains); nothing without any."""
    if not patterns:
        return false()
    # Its own alias: the search by address joins the recipients already, and the subquery
    # must not correlate to that join.
    other = aliased(Recipient)
    return or_(_address_matches(Message.mail_from, patterns),
               exists().where(other.message_id == Message.id,
                              _address_matches(other.address, patterns)))


def _mailbox_patterns(session: Session, mailbox_id: int) -> list[str]:
    box = session.scalar(select(Mailbox.address).where(Mailbox.id == mailbox_id))
    return [box.lower()] if box else []


def _partner_patterns(session: Session, name: str) -> list[str]:
    return list(session.scalars(select(PartnerAddress.pattern).join(Partner)
                                .where(func.lower(Partner.name) == name.lower())))


def _primary(session: Session, q: TransferQuery) -> tuple[str, list[str]]:
    """The address-like filter searched through sender and recipients separately (an
    address, else a shared mailbox's address, else a partner's addresses and domains), and
    its patterns; ("", []) without one."""
    if q.address is not None:
        return "address", [q.address]
    if q.mailbox_id is not None:
        return "mailbox", _mailbox_patterns(session, q.mailbox_id)
    if q.partner is not None:
        return "partner", _partner_patterns(session, q.partner)
    return "", []


def _page_ids(session: Session, q: TransferQuery) -> list[int]:
    primary, patterns = _primary(session, q)
    if primary and not patterns:
        return []  # no such mailbox or partner (or one without addresses)
    where = _conditions(session, q, primary)
    limit = q.size + 1
    if not primary:
        query: Select[int] = (select(Message.id).where(*where)
                              .order_by(Message.id.desc()).limit(limit))
        return list(session.scalars(query))
    # Sender and recipients asked apart, each newest first and at most a page, then merged:
    # an exact address is one range of its index; a domain walks the newest messages back
    # until a page is found.
    by_sender = (select(Message.id.label("id"))
                 .where(_address_matches(Message.mail_from, patterns), *where)
                 .order_by(Message.id.desc()).limit(limit).subquery())
    by_recipient = (select(Message.id.label("id")).join(Recipient)
                    .where(_address_matches(Recipient.address, patterns), *where)
                    .order_by(Message.id.desc()).limit(limit).subquery())
    merged = union(select(by_sender.c.id), select(by_recipient.c.id)).subquery()
    return list(session.scalars(select(merged.c.id).order_by(merged.c.id.desc()).limit(limit)))


def search(session: Session, q: TransferQuery) -> TransferPage:
    """One page of the messages ``q`` finds, newest first (never more than ``q.size``)."""
    ids = _page_ids(session, q)
    more = len(ids) > q.size
    ids = ids[:q.size]
    if not ids:
        return TransferPage([], None, q)
    messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    recipients: dict[int, list[str]] = {}
    for message_id, address in session.execute(
            select(Recipient.message_id, Recipient.address)
            .where(Recipient.message_id.in_(ids)).order_by(Recipient.id)):
        recipients.setdefault(message_id, []).append(address)
    rows = [_row(messages[i], recipients.get(i, [])) for i in ids]
    return TransferPage(rows, ids[-1] if more else None, q)


def _row(message: Message, recipients: list[str]) -> TransferRow:
    facts: dict[str, Any] = json.loads(message.facts) if message.facts else {}
    scan = facts.get("scan")
    verdict = str(scan).split(":", 1)[0].split(";", 1)[0].strip() if scan else None
    partner = facts.get("partner")
    return TransferRow(message.id, message.queue_id, message.direction, message.state,
                       message.received_at, message.mail_from, tuple(recipients),
                       message.case_reference, verdict,
                       str(partner) if partner else None)
