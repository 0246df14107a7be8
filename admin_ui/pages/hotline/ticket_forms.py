"""The hotline's additions to the ticket page and the ticket list: the follow-up, the
calls with their callback attempts, linked and merged tickets; the follow-up, link and
merge forms. The forms are routes of the ticket router (admin_ui.pages.tickets.routes
passes its ``change``: id check, one transaction, redirect or the page again with the
reason), so they share its guard, rights and refusal handling."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from admin_ui.security.identity import Staff
from admin_ui.security.rights import staff_user
from crypto.at_rest import MasterKey, open_sealed
from gateway.clock import Clock
from gateway.models import StaffUser
from mailboxes.hotline.callbacks import AttemptRow, attempts_of_calls
from mailboxes.hotline.calls import CallDetails, open_details, record_reads
from mailboxes.hotline.days import OFFICE_ZONE, office_day
from mailboxes.hotline.follow_ups import (
    FollowUpView,
    clear_follow_up,
    holder_column,
    parse_day,
    set_follow_up,
)
from mailboxes.hotline.follow_ups import note_context as follow_up_note_context
from mailboxes.hotline.links import LinkedTicket, link, links_of, merge
from mailboxes.hotline.models import Call, FollowUp
from mailboxes.tickets.models import Channel, Ticket
from mailboxes.tickets.records import get_ticket
from mailboxes.tickets.states import TicketError

Change = Callable[..., Response]


@dataclass(frozen=True)
class CallView:
    id: int
    taken_at: datetime
    taken_by: str
    role: str
    topic: str | None
    details: CallDetails
    callback_due_at: datetime | None
    callback_done_at: datetime | None
    attempts: list[AttemptRow]


def ticket_parts(session: Session, master: MasterKey, ticket_id: int, *, actor: str,
                 now: datetime) -> dict[str, object]:
    """What the ticket page's hotline parts show (tickets/hotline_parts.html): three
    statements (four with calls), whatever the number of calls, attempts and links."""
    merged = aliased(Ticket)
    head = session.execute(
        select(Ticket.number, Ticket.channel, Ticket.merged_into_id, merged.number,
               FollowUp.due_on, StaffUser.username, FollowUp.note_sealed, FollowUp.set_by,
               FollowUp.set_at)
        .outerjoin(merged, merged.id == Ticket.merged_into_id)
        .outerjoin(FollowUp, FollowUp.ticket_id == Ticket.id)
        .outerjoin(StaffUser, StaffUser.id == holder_column())
        .where(Ticket.id == ticket_id)).one()
    (number, channel, merged_into_id, merged_into, due_on, holder, note, set_by,
     set_at) = head
    follow_up = None if due_on is None else FollowUpView(
        due_on, holder, None if note is None else open_sealed(
            master, note, follow_up_note_context(number)).decode("utf-8"),
        set_by, set_at, due_on <= office_day(now))
    rows = list(session.scalars(select(Call).where(Call.ticket_id == ticket_id)
                                .order_by(Call.id)))
    attempts = attempts_of_calls(session, master, [c.id for c in rows]) if rows else {}
    calls = [CallView(c.id, c.taken_at, c.taken_by, c.caller_role, c.topic,
                      open_details(master, c.id, c.details_sealed), c.callback_due_at,
                      c.callback_done_at, attempts.get(c.id, []))
             for c in rows]
    if calls:
        record_reads(session, actor=actor, shown=[(number, c.id) for c in calls])
    links: list[LinkedTicket] = links_of(session, ticket_id, merged_into_id=merged_into_id)
    return {"hotline": {"channel": channel, "calls": calls, "follow_up": follow_up,
                        "links": links, "merged_into": merged_into,
                        "merged_into_id": merged_into_id,
                        "today": office_day(now).isoformat(), "zone": OFFICE_ZONE}}


def list_marks(session: Session, ticket_ids: Collection[int], *, now: datetime
               ) -> dict[str, object]:
    """The ticket list's marks, phone tickets and due follow-ups: one statement."""
    phone: set[int] = set()
    due: set[int] = set()
    if ticket_ids:
        today = office_day(now)
        for tid, channel, due_on in session.execute(
                select(Ticket.id, Ticket.channel, FollowUp.due_on)
                .outerjoin(FollowUp, FollowUp.ticket_id == Ticket.id)
                .where(Ticket.id.in_(list(ticket_ids)))):
            if channel == Channel.PHONE.value:
                phone.add(tid)
            if due_on is not None and due_on <= today:
                due.add(tid)
    return {"phone_tickets": phone, "follow_up_due": due}


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _same_mailbox(session: Session, ticket: Ticket, number: str) -> Ticket:
    """The ticket with this number in ``ticket``'s mailbox; another team's ticket is
    refused with the same words as a number that does not exist."""
    wanted = number.strip().upper()
    other = session.scalars(select(Ticket).where(
        Ticket.number == wanted, Ticket.mailbox_id == ticket.mailbox_id)).one_or_none()
    if other is None:
        raise TicketError(f"no ticket {wanted} in this mailbox", key="link_unknown",
                          ticket=wanted[:20])
    return other


def add_ticket_forms(router: APIRouter, change: Change, master_key: Callable[[], MasterKey],
                     clock: Clock) -> None:
    StaffUser = Annotated[Staff, Depends(staff_user)]

    @router.post("/tickets/{ticket_id}/follow-up")
    async def follow_up(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        form = await request.form()
        day, note, done = _text(form, "due_on"), _text(form, "note"), _text(form, "done")

        def work(session: Session, tid: int) -> None:
            ticket = get_ticket(session, tid)
            if done:
                clear_follow_up(session, ticket, actor=staff.username, now=clock())
                return
            if not day.strip():
                raise TicketError("which day?", key="follow_up_date", value="")
            set_follow_up(session, master_key(), ticket, parse_day(day), note,
                          actor=staff.username, actor_id=staff.user_id, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work)

    @router.post("/tickets/{ticket_id}/link")
    async def link_to(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        number = _text(await request.form(), "other")

        def work(session: Session, tid: int) -> None:
            ticket = get_ticket(session, tid)
            link(session, ticket, _same_mailbox(session, ticket, number),
                 actor=staff.username, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work)

    @router.post("/tickets/{ticket_id}/merge")
    async def merge_into(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        number = _text(await request.form(), "into")

        def work(session: Session, tid: int) -> None:
            ticket = get_ticket(session, tid)
            merge(session, master_key(), ticket, _same_mailbox(session, ticket, number),
                  actor=staff.username, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work)
