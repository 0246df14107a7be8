"""The start page: a greeting, the user's shared mailboxes (with their counts of new and open
tickets) and roles."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from admin_ui.pages.render import Renderer
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import staff_user
from gateway.staff.roles import GlobalRole

MAX_FORM = 16 * 1024


def home_router(auth: Authenticator, renderer: Renderer,
                mailboxes: Callable[[Staff], Sequence[object]]) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    @router.get("/")
    def home(request: Request, staff: StaffUser) -> Response:
        roles = [role.value for role in GlobalRole if role in staff.roles]
        return renderer.page(request, "home/home.html", {
            "roles": roles, "mailboxes": mailboxes(staff)}, staff=staff)

    return router
