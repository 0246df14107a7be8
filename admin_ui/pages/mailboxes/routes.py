"""A mailbox's ticket list: filters (state, assignee, unassigned, words of the subject or the
sender), newest first, paged by keyset (``before``). Only for members of the mailbox
(admin_ui.security.rights.check_mailbox); anyone else gets 404."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from admin_ui.pages.hotline.ticket_forms import list_marks
from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import check_mailbox, staff_user
from crypto.at_rest import MasterKey
from gateway.clock import Clock, system_clock
from gateway.db import read_scope
from mailboxes.members import list_members
from mailboxes.service_levels.views import marks as sla_marks_of
from mailboxes.tickets.models import TicketState
from mailboxes.tickets.queries import TicketFilter, list_tickets
from mailboxes.tickets.summaries import (
    MailboxSummary,
    first_protection,
    mailbox_info,
    my_mailboxes,
)

MAX_FORM = 16 * 1024
PAGE_SIZE = 50
MAX_SEARCH = 200
# The assignee filter's values besides a member's user id.
UNASSIGNED = "none"


def mailbox_overview(sessions: sessionmaker[Session]
                     ) -> Callable[[Staff], list[MailboxSummary]]:
    """The start page's list: the user's mailboxes with their counts of new and open
    tickets."""

    def overview(staff: Staff) -> list[MailboxSummary]:
        with read_scope(sessions) as session:
            return my_mailboxes(session, staff.user_id)

    return overview


def mailboxes_router(auth: Authenticator, sessions: sessionmaker[Session],
                     master_key: Callable[[], MasterKey], renderer: Renderer,
                     clock: Clock = system_clock) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    def ticket_list(staff: Staff, mailbox_id: int, state: str, assignee: str, q: str,
                    before: str) -> dict[str, object]:
        with read_scope(sessions) as session:
            access = check_mailbox(session, staff, mailbox_id)
            master = master_key()
            mailbox = mailbox_info(session, mailbox_id)
            members = list_members(session, mailbox.address)
            member_ids = {str(m.user_id): m.user_id for m in members}
            filters = TicketFilter(
                state=TicketState(state) if state in set(TicketState) else None,
                unassigned=assignee == UNASSIGNED,
                assignee_id=member_ids.get(assignee),
                search=q.strip()[:MAX_SEARCH] or None)
            page = list_tickets(session, master, mailbox_id, filters,
                                before=_before(before), limit=PAGE_SIZE)
            protection = first_protection(session, [row.id for row in page.rows])
            sla_marks = sla_marks_of(session, [row.id for row in page.rows])
            marks = list_marks(session, [row.id for row in page.rows], now=clock())
        return {**marks, "mailbox": mailbox, "role": access.role.value, "page": page,
                "protection": protection, "sla_marks": sla_marks, "members": members,
                "states": [s.value for s in TicketState],
                "filters": {"state": state if filters.state else "",
                            "assignee": assignee if (filters.unassigned
                                                     or filters.assignee_id) else "",
                            "q": filters.search or ""},
                "unassigned": UNASSIGNED}

    @router.get("/mailboxes/{mailbox_id}")
    async def mailbox_page(request: Request, staff: StaffUser, mailbox_id: str,
                           state: str = "", assignee: str = "", q: str = "",
                           before: str = "") -> Response:
        values = await run_in_threadpool(ticket_list, staff, parse_id(mailbox_id), state,
                                         assignee, q, before)
        return renderer.page(request, "mailboxes/tickets.html", values, staff=staff)

    return router


def _before(text: str) -> int | None:
    if not text:
        return None
    return parse_id(text)
