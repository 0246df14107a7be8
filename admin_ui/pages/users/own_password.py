"""A staff user changes their own password (/account/password), e.g. the one an admin
generated for them on the users pages, so nobody else knows it.

The current password is checked as every login checks it (gateway.staff.login: the shared
throttle counts a wrong one, so a borrowed, unlocked browser is no way to guess it); the new
one is set with gateway.staff.actions.change_password, as by ``xgate user password`` and the
admin's reset: audited, and every web session of the user ends, this one too, so the user
logs in again with the new password. A refusal is the form with the reason and nothing
changed.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from admin_ui.pages.auth.routes import clear_session_cookie
from admin_ui.pages.render import Renderer, language_of
from admin_ui.security.authentication import Authenticator, client_address
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import staff_user
from gateway.db import session_scope
from gateway.staff import actions
from gateway.staff import users as staff
from gateway.staff.login import Locked, Verified, password_login
from gateway.staff.throttle import Attempt
from gateway.web.catalogue import text

MAX_FORM = 16 * 1024
PATH = "/account/password"


def own_password_router(auth: Authenticator, sessions: sessionmaker[Session],
                        renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    def form(request: Request, user: Staff, *, error: str | None = None,
             status: int = 200) -> Response:
        return renderer.page(request, "users/own_password.html",
                             {"error": error, "min": staff.MIN_PASSWORD_LENGTH,
                              "max": staff.MAX_PASSWORD_LENGTH}, staff=user, status=status)

    @router.get(PATH)
    async def show(request: Request, user: StaffUser) -> Response:
        return form(request, user)

    @router.post(PATH)
    async def change(request: Request, user: StaffUser) -> Response:
        fields = await request.form()

        def get(name: str) -> str:
            value = fields.get(name)
            return value if isinstance(value, str) else ""

        current, new, again = get("current"), get("new"), get("again")
        t = text(language_of(request))
        address = client_address(request)

        def work() -> Response:
            if new != again:
                return form(request, user, error=t("own_password.mismatch"), status=409)
            if new == current:
                return form(request, user, error=t("own_password.same"), status=409)
            checked = password_login(sessions, Attempt(user.username, address), current,
                                     auth.settings.login, auth.clock())
            if isinstance(checked, Locked):
                return form(request, user, error=t("login.locked_short"), status=429)
            if not isinstance(checked, Verified):
                return form(request, user, error=t("own_password.wrong"), status=409)
            try:
                with session_scope(sessions) as session:
                    actions.change_password(session, user.username, new, actor=user.username)
            except staff.StaffError:
                return form(request, user, error=t("own_password.rules",
                                                   min=staff.MIN_PASSWORD_LENGTH), status=409)
            response = renderer.page(request, "users/own_password_changed.html", {})
            clear_session_cookie(response)
            return response

        return await run_in_threadpool(work)

    return router
