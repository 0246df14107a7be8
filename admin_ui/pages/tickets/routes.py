"""A ticket's page and its forms.

Every URL's ids are checked first (admin_ui.security.rights.check_ticket: the ticket's
mailbox must be one of the user's; an article or attachment must belong to the ticket, the
domain's reads say so), anything else is 404. Content is opened through the domain's audited
reads for each view and each download. Forms are POST with the session's CSRF token (the
guard), answered by a redirect to the ticket (POST-redirect-GET) or, when the domain refuses,
by the ticket page again with the reason and what was typed; the request's transaction then
rolls back, so nothing is half-stored. The reply form is multipart: its files stay in memory
(admin_ui.pages.tickets.uploads) up to the size a message may have.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.hotline.ticket_forms import add_ticket_forms, ticket_parts
from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.tickets.display import Shown, show_message, show_note
from admin_ui.pages.tickets.downloads import download
from admin_ui.pages.tickets.uploads import InMemoryFormRequest
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import check_ticket, staff_user
from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.portal.pickup.views import items_of_ticket
from gateway.settings import Settings
from gateway.web.catalogue import text
from mailboxes.members import list_members
from mailboxes.service_levels.business_hours import OFFICE_TIME
from mailboxes.service_levels.views import ticket_deadlines
from mailboxes.tickets.models import ArticleKind, TicketState
from mailboxes.tickets.page_reads import open_articles
from mailboxes.tickets.queries import ticket_view
from mailboxes.tickets.reads import open_attachment
from mailboxes.tickets.records import add_note, assign, change_state, get_ticket
from mailboxes.tickets.replies import Attachment, Reply, submit_reply
from mailboxes.tickets.states import ALLOWED, TicketError, parse_state
from mailboxes.tickets.summaries import mailbox_info, protection_from_facts


def refusal_text(request: Request, refusal: TicketError) -> str:
    """Why a form was refused, in the user's language when the domain named the reason
    (``TicketError.key``); otherwise its own words."""
    if refusal.key is None:
        return str(refusal)
    t = text(language_of(request))
    values = {name: t(f"state.{value}") if name in _STATE_VALUES else value
              for name, value in refusal.values.items()}
    return t(f"ticket_error.{refusal.key}", **values)


# A refusal's values that are ticket states, named on the page as the catalogue names them.
_STATE_VALUES = frozenset({"current", "target"})


# Notes, assignment and state: a note of 20,000 characters is at most 80 KB in UTF-8.
MAX_FORM = 256 * 1024
# The form fields of a reply besides the files.
MAX_REPLY_FIELDS = 512 * 1024
# Assigning to oneself without choosing from the list.
ME = "me"


@dataclass(frozen=True)
class Typed:
    """What the user typed into the forms, shown again with an error."""

    reply: str = ""
    case: str = ""
    category: str = ""
    note: str = ""


def actor_of(staff: Staff) -> str:
    return f"user:{staff.username}"


def tickets_router(auth: Authenticator, sessions: sessionmaker[Session],
                   master_key: Callable[[], MasterKey], settings: Settings, clock: Clock,
                   renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    uploads = APIRouter(route_class=guarded_route(
        auth, settings.smtp.max_message_bytes + MAX_REPLY_FIELDS, InMemoryFormRequest))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    def ticket_values(session: Session, staff: Staff, ticket_id: int) -> dict[str, object]:
        access = check_ticket(session, staff, ticket_id)
        master = master_key()
        view = ticket_view(session, master, ticket_id)
        contents = open_articles(session, master, ticket_id=ticket_id, actor=actor_of(staff))
        mailbox = mailbox_info(session, access.mailbox_id)
        articles: list[tuple[object, Shown | None, object]] = []
        for row in view.articles:
            data = contents.get(row.id)
            shown = None if data is None else (
                show_note(data) if row.kind == ArticleKind.NOTE.value else show_message(data))
            protection = (protection_from_facts(row.facts if row.queue_state else None)
                          if row.kind == ArticleKind.INBOUND.value else None)
            articles.append((row, shown, protection))
        return {"ticket": view.ticket, "history": view.history, "articles": articles,
                "mailbox": mailbox, "role": access.role.value,
                "members": list_members(session, mailbox.address),
                "next_states": sorted(s.value for s in ALLOWED[view.ticket.state]),
                "closed": view.ticket.state == TicketState.CLOSED,
                "sla": ticket_deadlines(session, ticket_id), "sla_zone": OFFICE_TIME,
                "me": ME, "max_upload": settings.smtp.max_message_bytes,
                "pickup_items": items_of_ticket(session, ticket_id, now=clock()),
                **ticket_parts(session, master, ticket_id, actor=actor_of(staff), now=clock())}

    def show(request: Request, staff: Staff, ticket_id: int, *, error: str | None = None,
             status: int = 200, typed: Typed = Typed()) -> Response:
        with session_scope(sessions) as session:
            values = ticket_values(session, staff, ticket_id)
        return renderer.page(request, "tickets/ticket.html",
                             {**values, "error": error, "typed": typed}, staff=staff,
                             status=status)

    def change(request: Request, staff: Staff, ticket_text: str,
               work: Callable[[Session, int], None], typed: Typed = Typed()) -> Response:
        """Check the id, do ``work`` in one transaction, then redirect to the ticket; on
        a refusal the ticket page again with the reason (the transaction rolled back)."""
        ticket_id = parse_id(ticket_text)
        try:
            with session_scope(sessions) as session:
                check_ticket(session, staff, ticket_id)
                work(session, ticket_id)
        except TicketError as exc:
            return show(request, staff, ticket_id, error=refusal_text(request, exc),
                        status=409, typed=typed)
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)

    @router.get("/tickets/{ticket_id}")
    async def ticket_page(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        return await run_in_threadpool(show, request, staff, parse_id(ticket_id))

    @router.get("/tickets/{ticket_id}/articles/{article_id}/attachments/{index}")
    async def attachment(staff: StaffUser, ticket_id: str, article_id: str,
                         index: str) -> Response:
        tid, aid, number = parse_id(ticket_id), parse_id(article_id), parse_id(index)

        def fetch() -> Response:
            try:
                with session_scope(sessions) as session:
                    check_ticket(session, staff, tid)
                    found = open_attachment(session, master_key(), ticket_id=tid,
                                            article_id=aid, index=number,
                                            actor=actor_of(staff))
            except TicketError:
                # Another ticket's article, or no such attachment: not there for this user.
                raise HTTPException(404) from None
            return download(found)

        return await run_in_threadpool(fetch)

    @router.post("/tickets/{ticket_id}/notes")
    async def note(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        form = await request.form()
        text = _text(form, "text")

        def work(session: Session, tid: int) -> None:
            add_note(session, master_key(), get_ticket(session, tid), text,
                     actor=staff.username, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work,
                                       Typed(note=text))

    @router.post("/tickets/{ticket_id}/assign")
    async def assign_to(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        chosen = _text(await request.form(), "assignee").strip()

        def work(session: Session, tid: int) -> None:
            username = staff.username if chosen == ME else (chosen or None)
            assign(session, get_ticket(session, tid), username, actor=staff.username,
                   now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work)

    @router.post("/tickets/{ticket_id}/state")
    async def set_state(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        chosen = _text(await request.form(), "state")

        def work(session: Session, tid: int) -> None:
            change_state(session, get_ticket(session, tid), parse_state(chosen),
                         actor=staff.username, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work)

    @uploads.post("/tickets/{ticket_id}/reply")
    async def reply(request: Request, staff: StaffUser, ticket_id: str) -> Response:
        form = await request.form()
        typed = Typed(reply=_text(form, "text"), case=_text(form, "case"),
                      category=_text(form, "category"))
        files = [(f.filename or "", f.content_type or "application/octet-stream",
                  await f.read()) for f in form.getlist("attachments")
                 if isinstance(f, UploadFile)]

        def work(session: Session, tid: int) -> None:
            attachments = [Attachment(name, kind, data) for name, kind, data in files
                           if name or data]  # an empty file field sends an empty part
            submit_reply(session, master_key(), Reply(
                tid, typed.reply, attachments, case=typed.case or None,
                category=typed.category or None), username=staff.username,
                hostname=settings.smtp.hostname,
                max_bytes=settings.smtp.max_message_bytes, now=clock())

        return await run_in_threadpool(change, request, staff, ticket_id, work, typed)

    # The hotline's forms on the ticket page: follow-up, link, merge.
    add_ticket_forms(router, change, master_key, clock)
    router.include_router(uploads)
    return router


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
