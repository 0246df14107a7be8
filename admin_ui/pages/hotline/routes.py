"""The hotline's pages of a mailbox: log a call (with the caller's open tickets to add it
to), the callbacks due (all, or the user's) with an attempt logged in one click, the
follow-ups due, and the topic catalogue (its lead edits it).

Rights as for tickets: every mailbox or call id is checked first (admin_ui.security.rights:
the mailbox must be one of the user's, else 404); forms are POST with the CSRF token, answered
by a redirect (POST-redirect-GET) or, when the domain refuses, by the same page with the
reason (409) after the transaction rolled back. The caller's name and number are sent only
in POST bodies, never in a URL (URLs end up in logs).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer
from admin_ui.pages.tickets.routes import refusal_text
from admin_ui.security.authentication import Authenticator
from admin_ui.security.errors import Forbidden
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import MailboxAccess, check_mailbox, not_found, staff_user
from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from mailboxes.hotline.callbacks import callbacks_due, get_call, record_attempt
from mailboxes.hotline.calls import CallForm, Match, log_call, open_tickets_of, record_reads
from mailboxes.hotline.days import OFFICE_ZONE, office_day, parse_office_time
from mailboxes.hotline.follow_ups import due_follow_ups
from mailboxes.hotline.models import Call, CallerRole
from mailboxes.hotline.topics import add_topic, list_topics, remove_topic
from mailboxes.models import Mailbox, MemberRole
from mailboxes.tickets.models import Ticket
from mailboxes.tickets.states import TicketError
from mailboxes.tickets.summaries import mailbox_info

MAX_FORM = 64 * 1024
NEW_TICKET = "new"


@dataclass(frozen=True)
class TypedCall:
    caller: str = ""
    role: str = CallerRole.CHILDMINDER.value
    number: str = ""
    topic: str = ""
    notes: str = ""
    case_ref: str = ""
    callback: bool = False
    callback_by: str = ""
    attach_to: str = NEW_TICKET
    matches: list[Match] = field(default_factory=list)
    searched: bool = False


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def hotline_router(auth: Authenticator, sessions: sessionmaker[Session],
                   master_key: Callable[[], MasterKey], clock: Clock,
                   renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    # --- log a call ---------------------------------------------------------------------

    def call_page(request: Request, staff: Staff, mailbox_id: int, typed: TypedCall, *,
                  error: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            access = check_mailbox(session, staff, mailbox_id)
            values = {"mailbox": mailbox_info(session, mailbox_id),
                      "role": access.role.value, "topics": list_topics(session, mailbox_id),
                      "roles": [r.value for r in CallerRole], "typed": typed,
                      "new_ticket": NEW_TICKET, "error": error}
        return renderer.page(request, "hotline/call.html", values, staff=staff,
                             status=status)

    @router.get("/hotline/{mailbox_id}/calls/new")
    async def new_call(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        return await run_in_threadpool(call_page, request, staff, parse_id(mailbox_id),
                                       TypedCall())

    @router.post("/hotline/{mailbox_id}/calls")
    async def post_call(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        form = await request.form()
        box_id = parse_id(mailbox_id)
        typed = TypedCall(
            caller=_text(form, "caller"), role=_text(form, "role"),
            number=_text(form, "number"), topic=_text(form, "topic"),
            notes=_text(form, "notes"), case_ref=_text(form, "case_ref"),
            callback=bool(_text(form, "callback")), callback_by=_text(form, "callback_by"),
            attach_to=_text(form, "attach_to") or NEW_TICKET)
        find_only = _text(form, "step") == "find"

        def work() -> Response:
            if find_only:
                # Look for the caller's open tickets; nothing is stored.
                with read_scope(sessions) as session:
                    check_mailbox(session, staff, box_id)
                    matches = open_tickets_of(session, master_key(), box_id,
                                              number=typed.number, caller=typed.caller)
                return call_page(request, staff, box_id, TypedCall(**{
                    **typed.__dict__, "matches": matches, "searched": True}))
            try:
                with session_scope(sessions) as session:
                    check_mailbox(session, staff, box_id)
                    mailbox = session.get(Mailbox, box_id)
                    assert mailbox is not None  # checked just now
                    due = None
                    if typed.callback:
                        if not typed.callback_by.strip():
                            raise TicketError("when is the callback due?",
                                              key="callback_missing")
                        due = parse_office_time(typed.callback_by)
                    attach = None if typed.attach_to == NEW_TICKET else _ticket_in(
                        session, typed.attach_to, box_id)
                    logged = log_call(session, master_key(), mailbox, CallForm(
                        caller=typed.caller, role=typed.role, number=typed.number,
                        topic=typed.topic or None, notes=typed.notes,
                        case_ref=typed.case_ref or None, callback_due=due),
                        actor=staff.username, now=clock(), attach_to=attach)
            except TicketError as exc:
                return call_page(request, staff, box_id, typed,
                                 error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"/tickets/{logged.ticket_id}", status_code=303)

        return await run_in_threadpool(work)

    # --- callbacks due ------------------------------------------------------------------

    def callbacks_page(request: Request, staff: Staff, mailbox_id: int, mine: bool, *,
                       error: str | None = None, status: int = 200) -> Response:
        with session_scope(sessions) as session:
            access = check_mailbox(session, staff, mailbox_id)
            rows = callbacks_due(session, master_key(), mailbox_id,
                                 holder_id=staff.user_id if mine else None)
            record_reads(session, actor=f"user:{staff.username}",
                         shown=[(r.ticket_number, r.call_id) for r in rows])
            values = {"mailbox": mailbox_info(session, mailbox_id),
                      "role": access.role.value, "rows": rows, "mine": mine,
                      "now": clock(), "zone": OFFICE_ZONE, "error": error}
        return renderer.page(request, "hotline/callbacks.html", values, staff=staff,
                             status=status)

    @router.get("/hotline/{mailbox_id}/callbacks")
    async def callbacks(request: Request, staff: StaffUser, mailbox_id: str,
                        mine: str = "") -> Response:
        return await run_in_threadpool(callbacks_page, request, staff, parse_id(mailbox_id),
                                       mine == "1")

    @router.post("/hotline/calls/{call_id}/attempts")
    async def attempt(request: Request, staff: StaffUser, call_id: str) -> Response:
        form = await request.form()
        cid = parse_id(call_id)
        outcome, note = _text(form, "outcome"), _text(form, "note")
        again, back = _text(form, "again_by"), _text(form, "back")
        mine = _text(form, "mine") == "1"

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    access, ticket_id = _check_call(session, staff, cid)
                    if outcome not in ("reached", "not_reached"):
                        raise TicketError("reached or not reached?", key="attempt_outcome")
                    record_attempt(session, master_key(), get_call(session, cid),
                                   reached=outcome == "reached", note=note,
                                   new_due=parse_office_time(again) if again.strip()
                                   and outcome == "not_reached" else None,
                                   actor=staff.username, now=clock())
            except TicketError as exc:
                with read_scope(sessions) as session:
                    access, _ = _check_call(session, staff, cid)
                return callbacks_page(request, staff, access.mailbox_id, mine,
                                      error=refusal_text(request, exc), status=409)
            target = (f"/tickets/{ticket_id}" if back == "ticket"
                      else f"/hotline/{access.mailbox_id}/callbacks"
                      + ("?mine=1" if mine else ""))
            return RedirectResponse(target, status_code=303)

        return await run_in_threadpool(work)

    # --- follow-ups due -----------------------------------------------------------------

    def follow_ups_page(staff: Staff, mailbox_id: int, everyone: bool) -> dict[str, object]:
        with read_scope(sessions) as session:
            access = check_mailbox(session, staff, mailbox_id)
            rows = due_follow_ups(session, master_key(), today=office_day(clock()),
                                  mailbox_id=mailbox_id,
                                  holder_id=None if everyone else staff.user_id)
            return {"mailbox": mailbox_info(session, mailbox_id), "role": access.role.value,
                    "rows": rows, "everyone": everyone, "today": office_day(clock())}

    @router.get("/hotline/{mailbox_id}/follow-ups")
    async def follow_ups(request: Request, staff: StaffUser, mailbox_id: str,
                         scope: str = "") -> Response:
        values = await run_in_threadpool(follow_ups_page, staff, parse_id(mailbox_id),
                                         scope == "all")
        return renderer.page(request, "hotline/follow_ups.html", values, staff=staff)

    # --- the topic catalogue ------------------------------------------------------------

    def topics_page(request: Request, staff: Staff, mailbox_id: int, *,
                    error: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            access = _check_lead(session, staff, mailbox_id)
            values = {"mailbox": mailbox_info(session, mailbox_id),
                      "role": access.role.value, "topics": list_topics(session, mailbox_id),
                      "error": error}
        return renderer.page(request, "hotline/topics.html", values, staff=staff,
                             status=status)

    @router.get("/hotline/{mailbox_id}/topics")
    async def topics(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        return await run_in_threadpool(topics_page, request, staff, parse_id(mailbox_id))

    @router.post("/hotline/{mailbox_id}/topics")
    async def change_topics(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        form = await request.form()
        box_id = parse_id(mailbox_id)
        added, removed = _text(form, "add"), _text(form, "remove")

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    _check_lead(session, staff, box_id)
                    mailbox = session.get(Mailbox, box_id)
                    assert mailbox is not None
                    if removed:
                        remove_topic(session, mailbox, removed, actor=staff.username)
                    else:
                        add_topic(session, mailbox, added, actor=staff.username)
            except TicketError as exc:
                return topics_page(request, staff, box_id, error=refusal_text(request, exc),
                                   status=409)
            return RedirectResponse(f"/hotline/{box_id}/topics", status_code=303)

        return await run_in_threadpool(work)

    return router


def _check_lead(session: Session, staff: Staff, mailbox_id: int) -> MailboxAccess:
    access = check_mailbox(session, staff, mailbox_id)
    if access.role != MemberRole.LEAD:
        raise Forbidden(f"{staff.username} does not lead mailbox {mailbox_id}")
    return access


def _check_call(session: Session, staff: Staff, call_id: int) -> tuple[MailboxAccess, int]:
    """The call's mailbox (the user must be a member) and ticket, or 404."""
    found = session.execute(select(Ticket.mailbox_id, Ticket.id)
                            .join(Call, Call.ticket_id == Ticket.id)
                            .where(Call.id == call_id)).first()
    if found is None:
        raise not_found()
    return check_mailbox(session, staff, found[0]), int(found[1])


def _ticket_in(session: Session, text: str, mailbox_id: int) -> int:
    """A ticket id from the form, of this mailbox; else refused like an unknown ticket."""
    if not text.isdigit() or len(text) > 15:
        raise TicketError("no such ticket", key="attach_unknown")
    found = session.scalar(select(Ticket.id).where(Ticket.id == int(text),
                                                   Ticket.mailbox_id == mailbox_id))
    if found is None:
        raise TicketError("no such ticket", key="attach_unknown")
    return int(found)
