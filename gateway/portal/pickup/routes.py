"""The citizen's pickup pages: enter the code, read the message, download its attachments.

GET /p/{token} shows the same code form for any link (no enumeration). A right code shows
the message and sets the portal's own short-lived pickup session cookie, which the message
page and the downloads need; a wrong one counts (gateway.portal.pickup.items), too many lock
the item, an expired item gets a clear page. Every read and download is audited by the library.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.portal.pickup import cookies
from gateway.portal.pickup.content import PickupMessage
from gateway.portal.pickup.downloads import download_response
from gateway.portal.pickup.items import (
    Outcome,
    PickupError,
    open_with_code,
    read_opened,
    record_download,
)
from gateway.portal.pickup.replies import submit_answer
from gateway.portal.render import PortalRenderer

MAX_TOKEN = 100
MAX_CODE = 20
MAX_ANSWER = 20_000
# The answer's form: 20,000 characters, percent-encoded, and the form token.
MAX_ANSWER_BODY = 12 * MAX_ANSWER + 1024
_NO_STORE = {"Cache-Control": "no-store"}


def pickup_router(sessions: sessionmaker[Session], master: MasterKey,
                  clock: Clock, renderer: PortalRenderer, *, max_tries: int,
                  secure_cookies: bool, hostname: str) -> APIRouter:
    router = APIRouter()

    def code_page(request: Request, token: str, *, error: str | None = None,
                  status_code: int = 200) -> Response:
        form_value = cookies.new_form_value()
        response = renderer.page(request, "pickup/code.html", {
            "action": f"/p/{token}", "form_token": form_value, "error": error},
            status_code=status_code)
        response.set_cookie(cookies.FORM_COOKIE, form_value, path="/p/", httponly=True,
                            samesite="strict", secure=secure_cookies)
        response.headers.update(_NO_STORE)
        return response

    def message_page(request: Request, token: str, message: PickupMessage) -> Response:
        form_value = cookies.new_form_value()
        response = renderer.page(request, "pickup/message.html", {
            "message": message, "base": f"/p/{token}", "form_token": form_value,
            "max_text": MAX_ANSWER})
        response.set_cookie(cookies.FORM_COOKIE, form_value, path="/p/", httponly=True,
                            samesite="strict", secure=secure_cookies)
        response.headers.update(_NO_STORE)
        return response

    def gone(request: Request, template: str, status_code: int) -> Response:
        response = renderer.page(request, template, status_code=status_code)
        response.headers.update(_NO_STORE)
        return response

    @router.get("/p/{token}")
    def enter_code(request: Request, token: str) -> Response:
        return code_page(request, token[:MAX_TOKEN])

    @router.post("/p/{token}")
    async def open_item(request: Request, token: str) -> Response:
        form = await request.form()
        code, field = form.get("code"), form.get(cookies.FORM_FIELD)
        if not isinstance(field, str) or not cookies.form_ok(
                request.cookies.get(cookies.FORM_COOKIE), field):
            return code_page(request, token, error="form", status_code=400)
        if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE \
                or len(token) > MAX_TOKEN:
            return code_page(request, token, error="wrong", status_code=400)
        now = clock()
        with session_scope(sessions) as session:
            result = open_with_code(session, master, token, code, now=now,
                                    max_tries=max_tries)
        if result.outcome is Outcome.EXPIRED:
            return gone(request, "pickup/expired.html", 410)
        if result.outcome is Outcome.LOCKED:
            return gone(request, "pickup/locked.html", 403)
        if result.outcome is Outcome.REFUSED or result.message is None \
                or result.item_id is None:
            return code_page(request, token, error="wrong", status_code=400)
        response = message_page(request, token, result.message)
        response.set_cookie(cookies.SESSION_COOKIE,
                            cookies.session_value(master, result.item_id, token, now),
                            max_age=int(cookies.SESSION_LIFETIME.total_seconds()),
                            path="/p/", httponly=True, samesite="strict",
                            secure=secure_cookies)
        return response

    def session_item(request: Request, token: str) -> int | None:
        return cookies.session_item(master, request.cookies.get(cookies.SESSION_COOKIE),
                                    token, clock())

    @router.get("/p/{token}/message")
    def show_again(request: Request, token: str) -> Response:
        item_id = session_item(request, token)
        if item_id is None:
            return code_page(request, token)
        try:
            with session_scope(sessions) as session:
                message = read_opened(session, master, item_id, now=clock())
        except PickupError:
            return gone(request, "pickup/expired.html", 410)
        return message_page(request, token, message)

    @router.get("/p/{token}/files/{part}")
    def download(request: Request, token: str, part: int) -> Response:
        item_id = session_item(request, token)
        if item_id is None:
            return code_page(request, token, status_code=403)
        try:
            with session_scope(sessions) as session:
                attachment = record_download(session, master, item_id, part, now=clock())
        except PickupError:
            return gone(request, "pickup/expired.html", 404)
        return download_response(attachment)

    @router.post("/p/{token}/answer")
    async def answer(request: Request, token: str) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_ANSWER_BODY:
            return gone(request, "pickup/answer_refused.html", 413)
        item_id = session_item(request, token)
        if item_id is None:
            return code_page(request, token, status_code=403)
        form = await request.form()
        text, field = form.get("text"), form.get(cookies.FORM_FIELD)
        if not isinstance(field, str) or not cookies.form_ok(
                request.cookies.get(cookies.FORM_COOKIE), field) or not isinstance(text, str):
            return gone(request, "pickup/answer_refused.html", 400)
        try:
            with session_scope(sessions) as session:
                submit_answer(session, master, item_id, text, hostname=hostname, now=clock())
        except PickupError:
            return gone(request, "pickup/answer_refused.html", 400)
        return gone(request, "pickup/answer_sent.html", 200)

    return router
