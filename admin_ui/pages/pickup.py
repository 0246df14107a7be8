"""The caseworker's pickup form: a new code for a citizen's pickup item (a lead or agent of
the ticket's mailbox), shown once on its own page and never stored in clear.

The item's ticket must be in one of the user's mailboxes (admin_ui.security.rights), else
404 like an unknown item. POST with the session's CSRF token (the guard).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import check_ticket, staff_user
from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.portal.pickup.items import PickupError, new_code
from gateway.portal.pickup.models import PickupItem

MAX_FORM = 4 * 1024


def pickup_router(auth: Authenticator, sessions: sessionmaker[Session],
                  master_key: Callable[[], MasterKey], clock: Clock,
                  renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    @router.post("/pickup/{item_id}/code")
    async def issue_code(request: Request, staff: StaffUser, item_id: str) -> Response:
        iid = parse_id(item_id)

        def work() -> Response:
            error: str | None = None
            code: str | None = None
            with session_scope(sessions) as session:
                ticket_id = session.scalar(
                    select(PickupItem.ticket_id).where(PickupItem.id == iid))
                if ticket_id is None:
                    raise HTTPException(404)
                check_ticket(session, staff, ticket_id)  # 404 for another team's item
                try:
                    code = new_code(session, master_key(), iid, actor=staff.username,
                                    now=clock())
                except PickupError as exc:
                    error = str(exc)
            response = renderer.page(request, "tickets/pickup_code.html", {
                "ticket_id": ticket_id, "code": code, "error": error},
                staff=staff, status=409 if error else 200)
            response.headers["Cache-Control"] = "no-store"
            return response

        return await run_in_threadpool(work)

    return router

