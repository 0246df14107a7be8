"""The upload pages: GET / (the form), POST /upload (the receipt, or a page that names the
problem). Every page works without JavaScript.

An upload takes one of ``max_concurrent_uploads`` slots first (none free: 503 with Retry-After,
the body unread); a body that stops arriving for ``body_timeout_seconds`` is answered 408.
The checks run cheapest first: body size, form token (CSRF and fill time), honeypot, rate
limits, the fields, the files, then the virus scan (while the message is built); only then
is anything queued, in one transaction with the submission row (and the receipt mail, if an
address was given).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.portal import form_token, rate_limits
from gateway.portal.filenames import clean_filename
from gateway.portal.render import PortalRenderer
from gateway.portal.scan import first_infected
from gateway.portal.submission import (
    Built,
    Receipt,
    Submission,
    UploadedFile,
    build,
    queue,
)
from gateway.portal.upload_form import (
    BadForm,
    BodyStalled,
    BodyTooLarge,
    ParsedForm,
    TooManyParts,
    parse_in_place,
    read_body,
)
from gateway.portal.upload_slots import NoSlot, UploadSlots
from gateway.settings import Settings

log = logging.getLogger(__name__)

# Room for the text fields and the multipart framing on top of the files' own bytes.
FORM_OVERHEAD = 256 * 1024
HONEYPOT = "website"
MAX_NAME = 200
MAX_EMAIL = 254
MAX_CASE_REFERENCE = 100
MAX_MESSAGE = 20_000
# When a citizen turned away because all upload slots were busy may try again.
RETRY_AFTER_SECONDS = 60
# Answers given before the whole body was read: the connection cannot carry another request.
_BODY_UNREAD = frozenset({408, 413, 503})
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"\\]+"
                    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")


def _megabytes(size: int) -> str:
    # "25", "2.5": no trailing ".0" on the page.
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


@dataclass
class Problem(Exception):
    status: int
    key: str
    values: dict[str, Any]


def upload_router(settings: Settings, sessions: sessionmaker[Session], master: MasterKey,
                  clock: Clock, renderer: PortalRenderer,
                  slots: UploadSlots | None = None) -> APIRouter:
    """``slots``: the portal's one bound on bodies read at once (shared with pickup answers)."""
    portal = settings.portal
    topics = {topic.name: topic.mailbox for topic in portal.topics}
    router = APIRouter()
    if slots is None:
        slots = UploadSlots(portal.max_concurrent_uploads)

    def form_page(request: Request, *, status_code: int = 200, errors: list[str] | None = None,
                  values: dict[str, str] | None = None) -> HTMLResponse:
        token = form_token.issue(master, clock())
        page = renderer.page(request, "upload.html", {
            "topics": list(topics), "form_token": token, "errors": errors or [],
            "values": values or {}, "max_files": portal.max_files,
            "max_megabytes": _megabytes(portal.max_upload_bytes),
            "honeypot": HONEYPOT,
        }, status_code=status_code)
        page.set_cookie(form_token.COOKIE, token, httponly=True, samesite="strict",
                        secure=portal.tls, path="/upload")
        return page

    def problem(request: Request, exc: Problem) -> HTMLResponse:
        page = renderer.page(request, "problem.html", {"key": exc.key, "values": exc.values},
                             status_code=exc.status)
        if exc.status in _BODY_UNREAD:
            page.headers["Connection"] = "close"
        return page

    @router.get("/", response_class=HTMLResponse)
    def upload_form(request: Request) -> HTMLResponse:
        return form_page(request)

    @router.post("/upload")
    async def upload(request: Request) -> Response:
        try:
            with slots.slot():
                return await _upload(request)
        except NoSlot:
            log.warning("portal upload turned away: all %d upload slots busy", slots.limit)
            page = problem(request, Problem(503, "portal.problem.busy", {}))
            page.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return page

    async def _upload(request: Request) -> Response:
        try:
            form = await _read_form(request)
            _check_token(request, form)
            if form.get(HONEYPOT):
                raise Problem(400, "portal.problem.robot", {})
            await asyncio.to_thread(_count_against_limits, request)
            values, errors = _fields(form)
            files = _files(form)
            if errors:
                return form_page(request, status_code=422, errors=errors, values=values)
            submission = Submission(
                topic=values["topic"], mailbox=topics[values["topic"]], name=values["name"],
                email=values["email"] or None, case_reference=values["case_reference"] or None,
                message=values["message"], files=files)
            now = clock()
            # clamd scans while the message is built (two cores at work, not one after the
            # other); an infected file throws the built message away unqueued.
            infected, built = await asyncio.gather(
                asyncio.to_thread(first_infected, settings, [(f.name, f.data) for f in files]),
                asyncio.to_thread(build, settings, submission, now))
            if infected is not None:
                log.warning("portal upload refused: %s in a file", infected.signature)
                raise Problem(422, "portal.problem.infected", {"name": infected.filename})
            # The message has the files now: drop every view into the request's body, so
            # its memory is free before sealing needs two more copies of the message.
            del form, files, submission
            receipt = await asyncio.to_thread(_queue, built, now)
        except Problem as exc:
            return problem(request, exc)
        log.info("portal submission %s queued as %s (%d file(s))", receipt.reference,
                 receipt.queue_id, len(receipt.files))
        page = renderer.page(request, "receipt.html", {"receipt": receipt})
        page.delete_cookie(form_token.COOKIE, path="/upload")
        return page

    async def _read_form(request: Request) -> ParsedForm:
        try:
            body = await read_body(request, portal.max_upload_bytes + FORM_OVERHEAD,
                                   idle_seconds=portal.body_timeout_seconds)
            return await parse_in_place(request, body, max_parts=portal.max_files + 1)
        except BodyStalled:
            log.warning("portal upload body stalled for %ss; dropped",
                        portal.body_timeout_seconds)
            raise Problem(408, "portal.problem.stalled", {}) from None
        except BodyTooLarge:
            raise Problem(413, "portal.problem.too_large",
                          {"megabytes": _megabytes(portal.max_upload_bytes)}
                          ) from None
        except TooManyParts:
            raise Problem(413, "portal.problem.too_many_files",
                          {"count": portal.max_files}) from None
        except BadForm:
            raise Problem(400, "portal.problem.bad_form", {}) from None

    def _check_token(request: Request, form: ParsedForm) -> None:
        wrong = form_token.check(master, request.cookies.get(form_token.COOKIE),
                                 form.fields.get(form_token.FIELD), clock(),
                                 timedelta(seconds=portal.min_fill_seconds))
        if wrong is None:
            return
        if wrong == form_token.TokenProblem.TOO_FAST:
            raise Problem(400, "portal.problem.too_fast", {})
        if wrong == form_token.TokenProblem.EXPIRED:
            raise Problem(400, "portal.problem.expired", {})
        raise Problem(403, "portal.problem.csrf", {})

    def _count_against_limits(request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        now = clock()
        with session_scope(sessions) as session:
            rate_limits.take_turn(session)
            rate_limits.forget_old(session, portal, now)
            ip_hash = rate_limits.hash_address(master, address)
            limited = rate_limits.over_limit(session, portal, ip_hash, now)
            if limited is None:
                rate_limits.record_hit(session, ip_hash, now)
        if limited is not None:
            log.warning("portal rate limit (%s) reached", limited.value)
            raise Problem(429, "portal.problem.rate_limited", {})

    def _fields(form: ParsedForm) -> tuple[dict[str, str], list[str]]:
        values = {name: form.get(name).strip() for name in
                  ("topic", "name", "email", "case_reference", "message")}
        errors = []
        if values["topic"] not in topics:
            errors.append("portal.error.topic")
        if not values["name"] or len(values["name"]) > MAX_NAME:
            errors.append("portal.error.name")
        if values["email"] and (len(values["email"]) > MAX_EMAIL
                                or not _EMAIL.match(values["email"])):
            errors.append("portal.error.email")
        if len(values["case_reference"]) > MAX_CASE_REFERENCE:
            errors.append("portal.error.case_reference")
        if not values["message"] or len(values["message"]) > MAX_MESSAGE:
            errors.append("portal.error.message")
        # Header values: no line breaks from a single-line field.
        for name in ("name", "case_reference"):
            values[name] = " ".join(values[name].split())
        return values, errors

    def _files(form: ParsedForm) -> list[UploadedFile]:
        # A file input left empty is sent as a part without a name and without bytes.
        uploads = [f for f in form.files if f.field == "files" and (f.filename or f.data)]
        if len(uploads) > portal.max_files:
            raise Problem(413, "portal.problem.too_many_files", {"count": portal.max_files})
        files = []
        for upload in uploads:
            name = clean_filename(upload.filename)
            if not upload.data:
                raise Problem(422, "portal.problem.empty_file", {"name": name})
            files.append(UploadedFile(name, upload.content_type, upload.data))
        if sum(len(f.data) for f in files) > portal.max_upload_bytes:
            raise Problem(413, "portal.problem.too_large",
                          {"megabytes": _megabytes(portal.max_upload_bytes)})
        return files

    def _queue(built: Built, now: datetime) -> Receipt:
        with session_scope(sessions) as session:
            return queue(session, master, settings, built, now)

    return router
