"""Tickets that belong together: linked (shown on both), or a duplicate merged into another.

A merged duplicate is closed with a pointer to the survivor. Its articles stay where they
are (their seals are bound to its number) and are shown on the survivor by reference; its
calls and its follow-up move. Mail that threads into the duplicate, by Message-ID or by its
number, lands in the survivor (``surviving``, called by mailboxes.tickets.threading).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from mailboxes.hotline.follow_ups import note_context
from mailboxes.hotline.models import Call, FollowUp, TicketLink
from mailboxes.models import Mailbox
from mailboxes.tickets import history
from mailboxes.tickets.models import Ticket, TicketState
from mailboxes.tickets.records import change_state
from mailboxes.tickets.states import TicketError

MAX_HOPS = 20


@dataclass(frozen=True)
class LinkedTicket:
    ticket_id: int
    number: str
    state: TicketState
    merged: bool  # merged into this ticket, or this ticket merged into it


def _pair(a: Ticket, b: Ticket) -> None:
    if a.id == b.id:
        raise TicketError("a ticket cannot be linked to itself", key="link_self")
    if a.mailbox_id != b.mailbox_id:
        # The same words as for an unknown number: a foreign ticket is not confirmed.
        raise TicketError(f"no ticket {b.number} in this mailbox", key="link_unknown",
                          ticket=b.number)


def _address(session: Session, ticket: Ticket) -> str | None:
    mailbox = session.get(Mailbox, ticket.mailbox_id)
    return None if mailbox is None else mailbox.address


def _add_link(session: Session, a: Ticket, b: Ticket, *, actor: str, now: datetime) -> bool:
    low, high = sorted((a.id, b.id))
    if session.get(TicketLink, (low, high)) is not None:
        return False
    session.add(TicketLink(low_id=low, high_id=high, created_at=now, actor=actor[:320]))
    session.flush()
    return True


def link(session: Session, a: Ticket, b: Ticket, *, actor: str, now: datetime) -> bool:
    """Link two tickets of one mailbox; False if they were linked already."""
    _pair(a, b)
    if not _add_link(session, a, b, actor=actor, now=now):
        return False
    history.record(session, a.id, actor=actor, action="linked", now=now, ticket=b.number)
    history.record(session, b.id, actor=actor, action="linked", now=now, ticket=a.number)
    audit.record(session, actor=actor, action=AuditAction.TICKETS_LINKED, detail={
        "mailbox": _address(session, a), "tickets": [a.number, b.number]})
    return True


def merge(session: Session, master: MasterKey, duplicate: Ticket, survivor: Ticket, *,
          actor: str, now: datetime) -> None:
    """Merge ``duplicate`` into ``survivor``."""
    _pair(duplicate, survivor)
    if duplicate.merged_into_id is not None:
        raise TicketError(f"{duplicate.number} was merged already", key="merged_already",
                          ticket=duplicate.number)
    if survivor.merged_into_id is not None:
        raise TicketError(f"{survivor.number} was itself merged into another ticket",
                          key="merge_into_merged", ticket=survivor.number)
    if TicketState(duplicate.state) != TicketState.CLOSED:
        change_state(session, duplicate, TicketState.CLOSED, actor=actor, now=now)
    duplicate.merged_into_id = survivor.id
    duplicate.updated_at = survivor.updated_at = now
    session.execute(update(Call).where(Call.ticket_id == duplicate.id)
                    .values(ticket_id=survivor.id))
    moved = session.get(FollowUp, duplicate.id)
    if moved is not None:
        if session.get(FollowUp, survivor.id) is None:
            # The note's seal names its ticket: opened and sealed again for the survivor.
            note = None if moved.note_sealed is None else seal(master, open_sealed(
                master, moved.note_sealed, note_context(duplicate.number)),
                note_context(survivor.number))
            session.add(FollowUp(ticket_id=survivor.id, due_on=moved.due_on,
                                 holder_id=moved.holder_id, note_sealed=note,
                                 set_by=moved.set_by, set_at=moved.set_at))
        session.delete(moved)
    session.flush()
    _add_link(session, duplicate, survivor, actor=actor, now=now)
    history.record(session, duplicate.id, actor=actor, action="merged-into", now=now,
                   ticket=survivor.number)
    history.record(session, survivor.id, actor=actor, action="merged-from", now=now,
                   ticket=duplicate.number)
    audit.record(session, actor=actor, action=AuditAction.TICKET_MERGED, detail={
        "mailbox": _address(session, survivor), "duplicate": duplicate.number,
        "survivor": survivor.number})


def surviving(session: Session, ticket: Ticket) -> Ticket:
    """The ticket itself, or the one it was merged into (through merges of merges)."""
    for _ in range(MAX_HOPS):
        if ticket.merged_into_id is None:
            return ticket
        target = session.get(Ticket, ticket.merged_into_id)
        if target is None:
            return ticket
        ticket = target
    return ticket


def links_of(session: Session, ticket_id: int, *, merged_into_id: int | None = None
             ) -> list[LinkedTicket]:
    """The tickets linked to this one, and those merged into it or it into (``merged_into_id``:
    the ticket's own pointer, known to the caller): one statement."""
    other = (select(TicketLink.high_id).where(TicketLink.low_id == ticket_id)
             .union(select(TicketLink.low_id).where(TicketLink.high_id == ticket_id)))
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.state, Ticket.merged_into_id)
        .where(or_(Ticket.id.in_(other), Ticket.merged_into_id == ticket_id))
        .order_by(Ticket.id))
    return [LinkedTicket(tid, number, TicketState(state),
                         merged_into == ticket_id or tid == merged_into_id)
            for tid, number, state, merged_into in rows]


def merged_from(session: Session, ticket_id: int) -> list[int]:
    """The duplicates merged into this ticket, whose articles it shows by reference."""
    return list(session.scalars(select(Ticket.id).where(Ticket.merged_into_id == ticket_id)
                                .order_by(Ticket.id)))
