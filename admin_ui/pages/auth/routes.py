"""The login pages. They come before a complete login, so they are not behind the login
guard: each checks what it needs itself (the double-submit CSRF cookie for the password form,
the waiting login's CSRF token for the second factor, the live session's for logout) through
admin_ui.security, and never reads the body before it knows the login it belongs to.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from admin_ui.api.body_limit import bounded_route
from admin_ui.pages.render import Renderer, language_of
from admin_ui.security.authentication import Authenticator, client_address
from admin_ui.security.errors import CsrfRefused, NotAuthenticated
from admin_ui.security.guard import check_csrf, guarded_route
from admin_ui.security.identity import PendingLogin, Staff
from admin_ui.security.login import Advanced, WebLogin
from admin_ui.security.rights import staff_user
from gateway.staff import users as staff_users
from gateway.staff.login import Locked
from gateway.web import csrf, language
from gateway.web import sessions as web_sessions
from gateway.web.catalogue import text

# Login forms are a name, a password and a code.
MAX_FORM = 16 * 1024
_INFOS = ("logged_out", "logged_out_everywhere", "expired")


def set_session_cookie(response: Response, token: str) -> None:
    # Secure even on the plain-HTTP loopback listener: browsers treat http://127.0.0.1 and
    # http://localhost as secure contexts and keep such cookies; any other origin needs TLS.
    response.set_cookie(web_sessions.COOKIE, token, secure=True, httponly=True,
                        samesite="strict", path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(web_sessions.COOKIE, secure=True, httponly=True,
                           samesite="strict", path="/")


def _advance(step: Advanced) -> RedirectResponse:
    response = RedirectResponse(step.next_path, status_code=303)
    set_session_cookie(response, step.token)
    return response


def _minutes(locked: Locked) -> int:
    return max(1, -(-int(locked.wait.total_seconds()) // 60))


def auth_router(auth: Authenticator, login: WebLogin, renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=bounded_route(MAX_FORM), include_in_schema=True)
    guarded = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    def login_page(request: Request, *, status: int = 200, error: str | None = None,
                   username: str = "", info: str | None = None) -> Response:
        token = csrf.new_token()
        response = renderer.page(request, "auth/login.html", {
            "error": error, "username": username, "info": info}, status=status,
            csrf_token=token)
        response.set_cookie(csrf.LOGIN_COOKIE, token, secure=True, httponly=True,
                            samesite="strict", path="/login")
        return response

    @router.get("/login")
    def show_login(request: Request, info: str | None = None) -> Response:
        return login_page(request, info=info if info in _INFOS else None)

    @router.post("/login")
    async def post_login(request: Request, username: Annotated[str, Form(max_length=
                         staff_users.MAX_USERNAME_LENGTH)] = "",
                         password: Annotated[str, Form(max_length=
                         staff_users.MAX_PASSWORD_LENGTH)] = "",
                         csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
        if not csrf.matches(request.cookies.get(csrf.LOGIN_COOKIE), csrf_token):
            raise CsrfRefused("the login form has expired; reload the page")
        outcome = await run_in_threadpool(
            login.password, username, password, client_address(request),
            request.cookies.get(web_sessions.COOKIE))
        if isinstance(outcome, Advanced):
            response = _advance(outcome)
            response.delete_cookie(csrf.LOGIN_COOKIE, secure=True, httponly=True,
                                   samesite="strict", path="/login")
            return response
        if isinstance(outcome, Locked):
            return login_page(request, status=429, username=username,
                              error=renderer_text(request, "login.locked",
                                                  minutes=_minutes(outcome)))
        return login_page(request, status=401, username=username,
                          error=renderer_text(request, "login.refused"))

    async def pending(request: Request) -> PendingLogin:
        return await run_in_threadpool(auth.pending, request)

    @router.get("/login/code")
    async def show_code(request: Request) -> Response:
        waiting = await pending(request)
        if not waiting.enrolled:
            return RedirectResponse("/login/enrol", status_code=303)
        return renderer.page(request, "auth/code.html", {"error": None},
                             csrf_token=waiting.csrf_token)

    @router.post("/login/code")
    async def post_code(request: Request) -> Response:
        waiting = await pending(request)
        await check_csrf(request, waiting.csrf_token)
        code = await _field(request, "code")
        outcome = await run_in_threadpool(login.code, waiting, code, client_address(request))
        if isinstance(outcome, Advanced):
            return _advance(outcome)
        key, status = (("login.locked_short", 429) if isinstance(outcome, Locked)
                       else ("totp.wrong", 401))
        return renderer.page(request, "auth/code.html",
                             {"error": renderer_text(request, key)}, status=status,
                             csrf_token=waiting.csrf_token)

    @router.get("/login/enrol")
    async def show_enrol(request: Request) -> Response:
        waiting = await pending(request)
        if waiting.enrolled:
            return RedirectResponse("/login/code", status_code=303)
        enrolment = await run_in_threadpool(login.enrolment, waiting)
        return renderer.page(request, "auth/enrol.html", {
            "enrolment": enrolment, "error": None}, csrf_token=waiting.csrf_token)

    @router.post("/login/enrol")
    async def post_enrol(request: Request) -> Response:
        waiting = await pending(request)
        await check_csrf(request, waiting.csrf_token)
        if waiting.enrolled:
            return RedirectResponse("/login/code", status_code=303)
        code = await _field(request, "code")
        outcome = await run_in_threadpool(login.confirm_enrolment, waiting, code,
                                          client_address(request))
        if isinstance(outcome, tuple):
            step, codes = outcome
            response = renderer.page(request, "auth/recovery_codes.html", {"codes": codes})
            set_session_cookie(response, step.token)
            return response
        enrolment = await run_in_threadpool(login.enrolment, waiting)
        key, status = (("login.locked_short", 429) if isinstance(outcome, Locked)
                       else ("enrol.wrong", 401))
        return renderer.page(request, "auth/enrol.html", {
            "enrolment": enrolment, "error": renderer_text(request, key)}, status=status,
            csrf_token=waiting.csrf_token)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        # Any live session, complete or still waiting for its second factor.
        expected = await run_in_threadpool(auth.session_csrf, request)
        if expected is None:
            raise NotAuthenticated("not logged in")
        await check_csrf(request, expected)
        await run_in_threadpool(login.logout, request.cookies.get(web_sessions.COOKIE))
        response = RedirectResponse("/login?info=logged_out", status_code=303)
        clear_session_cookie(response)
        return response

    @guarded.post("/logout/everywhere")
    async def logout_everywhere(staff: StaffUser) -> Response:
        await run_in_threadpool(login.logout_everywhere, staff)
        response = RedirectResponse("/login?info=logged_out_everywhere", status_code=303)
        clear_session_cookie(response)
        return response

    @guarded.post("/account/recovery-codes")
    async def new_recovery_codes(request: Request, staff: StaffUser) -> Response:
        codes = await run_in_threadpool(login.new_recovery_codes, staff)
        return renderer.page(request, "auth/recovery_codes.html", {"codes": codes},
                             staff=staff)

    @router.get("/language")
    def choose_language(lang: str = "", back: str = "/") -> Response:
        # Only a path of this site: never an open redirect.
        target = back if back.startswith("/") and not back.startswith(("//", "/\\")) else "/"
        response = RedirectResponse(quote(target, safe="/?=&"), status_code=303)
        if lang in {choice.value for choice in language.Language}:
            response.set_cookie(language.COOKIE, lang, secure=True, httponly=True,
                                samesite="strict", path="/", max_age=365 * 24 * 3600)
        return response

    router.include_router(guarded)
    return router


def renderer_text(request: Request, key: str, **values: object) -> str:
    return text(language_of(request))(key, **values)


async def _field(request: Request, name: str, max_length: int = 64) -> str:
    value = (await request.form()).get(name)
    return value[:max_length] if isinstance(value, str) else ""
