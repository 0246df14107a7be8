"""The route class of every router behind a login: who is asking is settled before the
request's body is read, then the body is read within its limit, then an unsafe request made
with the login session must carry its CSRF token (header or form field).

FastAPI reads a route's body before it solves the route's dependencies, so a dependency
alone would check identity only after a (possibly large, possibly hostile) body had been
received; here nothing of the body is read for someone who is not logged in. The rights
(admin_ui.security.rights) are dependencies and read the identity this leaves in
``request.state.staff``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from admin_ui.api.body_limit import BoundedRequest
from admin_ui.security.authentication import Authenticator
from admin_ui.security.errors import CsrfRefused
from admin_ui.security.identity import Staff
from gateway.web import csrf

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def guarded_route(auth: Authenticator, max_body: int,
                  request_class: type[BoundedRequest] = BoundedRequest) -> type[APIRoute]:
    """A route class for ``APIRouter(route_class=...)``: login, body limit, CSRF.
    ``request_class``: a BoundedRequest that parses forms its own way (uploads kept in
    memory, admin_ui.pages.tickets.uploads)."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                staff = await run_in_threadpool(auth.identify, request)
                bounded = request_class(request.scope, request.receive, max_body)
                bounded.state.staff = staff
                # Read here, not first in the handler: FastAPI turns any error while it
                # reads the body into a bare 400.
                await bounded.body()
                await check_csrf(bounded, staff.csrf_token)
                return await handler(bounded)

            return handle

    return GuardedRoute


async def check_csrf(request: Request, expected: str | None) -> None:
    """CsrfRefused for an unsafe request without ``expected`` (None: not a cookie login, so
    no CSRF risk: a browser never adds an Authorization header on its own)."""
    if expected is None or request.method in csrf.SAFE_METHODS:
        return
    given = request.headers.get(csrf.HEADER)
    if given is None and request.headers.get("content-type", "").startswith(_FORMS):
        value = (await request.form()).get(csrf.FIELD)
        given = value if isinstance(value, str) else None
    if given is None:
        raise CsrfRefused("the CSRF token is missing: send the form's csrf_token field or "
                          f"the {csrf.HEADER} header")
    if not csrf.matches(expected, given):
        raise CsrfRefused("the CSRF token is wrong or from an earlier login; reload the page")


def staff_of(request: Request) -> Staff:
    """The identity the guard settled; a route not behind the guard has none (fail closed)."""
    staff = getattr(request.state, "staff", None)
    if not isinstance(staff, Staff):
        raise RuntimeError(f"route {request.url.path} is not behind the login guard")
    return staff
