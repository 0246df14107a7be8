"""The citizen's pickup pages: enter the code, read the message, download its attachments.

GET /p/{token} shows the same code form for any link (no enumeration). A right code shows
the message and sets the portal's own short-lived pickup session cookie, which the message
page and the downloads need; a wrong one counts (gateway.portal.pickup.items), too many lock
the item, an expired item gets a clear page. Every read and download is audited by the library.

The answer may carry files: the body is read into memory within the portal's upload limits
(never spooled to disk; a stalled body is dropped), each file is scanned by clamd in the
request as on the upload page (an infected one is refused by name, nothing queued), and the
answer is queued as mail into the ticket's mailbox, where the worker scans it again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.portal.filenames import clean_filename
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
from gateway.portal.pickup.recovery import resend_code
from gateway.portal.pickup.replies import AnswerFile, submit_answer
from gateway.portal.pickup.sender import CodeSender
from gateway.portal.render import PortalRenderer
from gateway.portal.scan import first_infected
from gateway.portal.upload_form import (
    BadForm,
    BodyStalled,
    BodyTooLarge,
    TooManyParts,
    parse_in_memory,
    read_body,
)
from gateway.portal.upload_slots import NoSlot, UploadSlots
from gateway.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKEN = 100
MAX_CODE = 20
MAX_ANSWER = 20_000
# The answer's text: 20,000 characters, percent-encoded, the form token and the framing.
MAX_ANSWER_TEXT_BODY = 12 * MAX_ANSWER + 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}
# When a citizen turned away because all upload slots were busy may try again.
RETRY_AFTER_SECONDS = 60
# Who the SMS with a code says it is from (as when the code goes with the notice).
SMS_OFFICE = "Bürgerportal"


class AnswerProblem(Exception):
    """The answer was refused; ``key`` names why on the page (portal.pickup.answer_problem.*)."""

    def __init__(self, status: int, key: str, **values: Any) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def pickup_router(sessions: sessionmaker[Session], master: MasterKey,
                  clock: Clock, renderer: PortalRenderer, *, max_tries: int,
                  secure_cookies: bool, hostname: str,
                  settings: Settings | None = None,
                  slots: UploadSlots | None = None,
                  code_sender: CodeSender | None = None) -> APIRouter:
    """``settings`` give the upload limits and clamd for files with an answer; without them
    an answer is text only. ``slots`` bound how many answers are read at once (each may
    hold up to ``max_upload_bytes`` in memory); pass the upload form's to share its bound."""
    router = APIRouter()
    portal = settings.portal if settings is not None else None
    if slots is None:
        slots = UploadSlots(portal.max_concurrent_uploads if portal is not None else 4)
    max_files = portal.max_files if portal is not None else 0
    max_file_bytes = portal.max_upload_bytes if portal is not None else 0
    max_body = MAX_ANSWER_TEXT_BODY + max_file_bytes
    # Self-service recovery of a code: only where the office allows it and can send SMS.
    self_service = code_sender is not None and portal is not None and portal.self_service_codes

    def code_page(request: Request, token: str, *, error: str | None = None,
                  status_code: int = 200) -> Response:
        form_value = cookies.new_form_value()
        response = renderer.page(request, "pickup/code.html", {
            "action": f"/p/{token}", "form_token": form_value, "error": error,
            "new_code_action": f"/p/{token}/new-code" if self_service else None},
            status_code=status_code)
        response.set_cookie(cookies.FORM_COOKIE, form_value, path="/p/", httponly=True,
                            samesite="strict", secure=secure_cookies)
        response.headers.update(_NO_STORE)
        return response

    def message_page(request: Request, token: str, message: PickupMessage) -> Response:
        form_value = cookies.new_form_value()
        response = renderer.page(request, "pickup/message.html", {
            "message": message, "base": f"/p/{token}", "form_token": form_value,
            "max_text": MAX_ANSWER, "max_files": max_files,
            "max_megabytes": _megabytes(max_file_bytes)})
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

    @router.post("/p/{token}/new-code")
    async def ask_for_new_code(request: Request, token: str) -> Response:
        if not self_service or code_sender is None or portal is None:
            raise HTTPException(404)
        form = await request.form()
        field = form.get(cookies.FORM_FIELD)
        if not isinstance(field, str) or not cookies.form_ok(
                request.cookies.get(cookies.FORM_COOKIE), field):
            return code_page(request, token, error="form", status_code=400)
        if len(token) <= MAX_TOKEN:
            with session_scope(sessions) as session:
                resend_code(session, master, code_sender, token, now=clock(),
                            interval=timedelta(minutes=portal.self_service_interval_minutes),
                            office=SMS_OFFICE)
        # The same answer whatever happened: the page tells nothing about the link.
        response = renderer.page(request, "pickup/new_code.html", {
            "back": f"/p/{token}", "minutes": portal.self_service_interval_minutes})
        response.headers.update(_NO_STORE)
        return response

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
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            return refused(request, token, AnswerProblem(
                413, "too_large", megabytes=_megabytes(max_file_bytes)))
        item_id = session_item(request, token)
        if item_id is None:
            return code_page(request, token, status_code=403)
        try:
            with slots.slot():
                return await take_answer(request, token, item_id)
        except NoSlot:
            log.warning("pickup answer turned away: all %d upload slots busy", slots.limit)
            response = refused(request, token, AnswerProblem(503, "busy"))
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response

    async def take_answer(request: Request, token: str, item_id: int) -> Response:
        try:
            form = await read_answer(request)
            text, field = form.get("text"), form.get(cookies.FORM_FIELD)
            if not isinstance(field, str) or not cookies.form_ok(
                    request.cookies.get(cookies.FORM_COOKIE), field) \
                    or not isinstance(text, str):
                raise AnswerProblem(400, "form")
            files = await answer_files(form)
            if files and settings is not None:
                infected = await asyncio.to_thread(
                    first_infected, settings, [(f.name, f.data) for f in files])
                if infected is not None:
                    log.warning("pickup answer refused: %s in a file", infected.signature)
                    raise AnswerProblem(422, "infected", name=infected.filename)
            await asyncio.to_thread(queue_answer, item_id, text, files)
        except AnswerProblem as exc:
            return refused(request, token, exc)
        except PickupError:
            return refused(request, token, AnswerProblem(400, "refused"))
        return gone(request, "pickup/answer_sent.html", 200)

    def queue_answer(item_id: int, text: str, files: list[AnswerFile]) -> None:
        with session_scope(sessions) as session:
            submit_answer(session, master, item_id, text, hostname=hostname, now=clock(),
                          files=files)

    def refused(request: Request, token: str, problem: AnswerProblem) -> Response:
        response = renderer.page(request, "pickup/answer_refused.html", {
            "problem": problem.key, "values": problem.values,
            "back": f"/p/{token[:MAX_TOKEN]}/message"}, status_code=problem.status)
        response.headers.update(_NO_STORE)
        return response

    async def read_answer(request: Request) -> FormData:
        idle = portal.body_timeout_seconds if portal is not None else 30.0
        try:
            body = await read_body(request, max_body, idle_seconds=idle)
            if request.headers.get("content-type", "").lower().startswith(
                    "application/x-www-form-urlencoded"):
                pairs: list[tuple[str, str | UploadFile]] = list(
                    parse_qsl(body.decode("ascii"), keep_blank_values=True))
                return FormData(pairs)
            return await parse_in_memory(request, body, max_parts=max_files + 1)
        except BodyStalled:
            raise AnswerProblem(408, "stalled") from None
        except BodyTooLarge:
            raise AnswerProblem(413, "too_large",
                                megabytes=_megabytes(max_file_bytes)) from None
        except TooManyParts:
            raise AnswerProblem(413, "too_many_files", count=max_files) from None
        except (BadForm, UnicodeDecodeError):
            raise AnswerProblem(400, "form") from None

    async def answer_files(form: FormData) -> list[AnswerFile]:
        # A file input left empty is sent as a part without a name and without bytes.
        uploads = [u for u in form.getlist("files") if isinstance(u, UploadFile)
                   and (u.filename or u.size)]
        if len(uploads) > max_files:
            raise AnswerProblem(413, "too_many_files", count=max_files)
        files = []
        for upload in uploads:
            data = await upload.read()
            name = clean_filename(upload.filename)
            if not data:
                raise AnswerProblem(422, "empty_file", name=name)
            files.append(AnswerFile(name, upload.content_type or "application/octet-stream",
                                    data))
        if sum(len(f.data) for f in files) > max_file_bytes:
            raise AnswerProblem(413, "too_large", megabytes=_megabytes(max_file_bytes))
        return files

    return router


def _megabytes(size: int) -> str:
    # "25", "2.5": no trailing ".0" on the page.
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")
