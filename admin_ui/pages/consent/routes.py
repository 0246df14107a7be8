"""The consent register in the console (/console/consent): the list and its search, record a
release with its signed scan, its page (every version, the reports held for its case), change
it (a new version), revoke it, download its scan; the dry run; held reports and the approval
of a transfer on a legal basis by a second person.

Rights: admin_ui.security.rights.consent_scope, asked by every route (403 for the auditor and
the DPO, whose console has no consent area); a release or held report of another team's
mailbox answers 404 like one that does not exist. Each route calls the same library function
as ``xgate consent`` and /api/v1/consents. Forms are POST with the session's CSRF token
(the guard), answered by a redirect (POST-redirect-GET) or, when refused, by the same form
with the reason in the user's language and what was typed; the transaction then rolls back,
so nothing is stored half. Scans are read in memory (never spooled to disk), accepted only as
PDF or image by their first bytes and clean by clamd, and sealed by the library.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.consent.forms import CheckForm, ReleaseForm, chosen_mailbox, day, text_of
from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.tickets.downloads import PASSIVE_TYPES, content_disposition
from admin_ui.pages.tickets.uploads import InMemoryFormRequest
from admin_ui.security.authentication import Authenticator
from admin_ui.security.errors import Forbidden
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import (
    ConsentScope,
    ConsoleArea,
    area_user,
    check_held,
    check_release,
    consent_scope,
    held_in_scope,
    not_found,
)
from crypto.at_rest import MasterKey
from gateway.clock import Clock
from gateway.consent.actions import record_change, record_release, record_revocation
from gateway.consent.documents import ACCEPTED_TYPES, checked_scan
from gateway.consent.errors import ConsentConflict, ConsentError, ConsentNotFound
from gateway.consent.gate import dry_run
from gateway.consent.holds import HeldReport, approve_statutory, approvers_of, held_reports
from gateway.consent.records import (
    Document,
    assign_mailbox,
    known_cases,
    read_document,
    read_release,
    release_mailbox,
)
from gateway.consent.search import STATES, search_releases
from gateway.consent.views import release_state
from gateway.db import read_scope, session_scope
from gateway.models import HoldKind, Message
from gateway.policy.consent import GRANTOR_ROLES, normalise_case
from gateway.settings import Settings
from gateway.web.catalogue import text
from mailboxes.models import Mailbox

BASE = "/console/consent"
MAX_FORM = 64 * 1024
# The release form's fields besides the scan.
MAX_RELEASE_FIELDS = 256 * 1024
# Releases one list shows; more means: narrow the search.
LIST_LIMIT = 200


def refusal_text(request: Request, refusal: ConsentError) -> str:
    """Why a form was refused, in the user's language when the library named the reason."""
    if refusal.key is None:
        return str(refusal)
    t = text(language_of(request))
    values = dict(refusal.values)
    if "field" in values:
        values["field"] = t(f"consent.field.{values['field']}")
    return t(f"consent_error.{refusal.key}", **values)


def _status(refusal: ConsentError) -> int:
    return 409 if isinstance(refusal, ConsentConflict) else 422


def _approvers(session: Session, reports: list[HeldReport]) -> dict[str, tuple[str, ...]]:
    ids = dict(session.execute(select(Message.queue_id, Message.id).where(
        Message.queue_id.in_([r.queue_id for r in reports]))).all())
    return {r.queue_id: approvers_of(session, ids[r.queue_id]) for r in reports
            if r.kind == HoldKind.STATUTORY_APPROVAL and r.queue_id in ids}


@dataclass(frozen=True)
class MailboxChoice:
    id: int
    name: str
    address: str


def _mailboxes(session: Session, scope: ConsentScope) -> list[MailboxChoice]:
    """The mailboxes a release may be recorded in: the user's, or every one for an admin."""
    query = select(Mailbox.id, Mailbox.name, Mailbox.address).order_by(Mailbox.name)
    if scope.mailbox_ids is not None:
        query = query.where(Mailbox.id.in_(list(scope.mailbox_ids)))
    return [MailboxChoice(*row) for row in session.execute(query).all()]


async def _scan_upload(request: Request) -> tuple[str, bytes] | None:
    """The uploaded scan (name, bytes) from the multipart form, in memory; None if no file."""
    form = await request.form()
    upload = form.get("document")
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read()
    if not data and not upload.filename:
        return None  # an empty file field sends an empty part
    return upload.filename or "", data


def consent_router(auth: Authenticator, sessions: sessionmaker[Session],
                   master_key: Callable[[], MasterKey], settings: Settings, clock: Clock,
                   renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    uploads = APIRouter(route_class=guarded_route(
        auth, settings.consent.max_document_bytes + MAX_RELEASE_FIELDS, InMemoryFormRequest))
    ConsentUser = Annotated[Staff, Depends(area_user(ConsoleArea.CONSENT))]
    zone = ZoneInfo(settings.consent.timezone)

    def page(request: Request, staff: Staff, template: str, values: dict[str, Any],
             status: int = 200) -> Response:
        return renderer.page(request, f"consent/{template}",
                             {"zone": zone, "base": BASE, **values}, staff=staff,
                             status=status)

    def document_of(upload: tuple[str, bytes] | None) -> Document | None:
        if upload is None:
            return None
        name, data = upload
        if len(data) > settings.consent.max_document_bytes:
            raise ConsentError("the release document is too large", key="document_big",
                               limit=settings.consent.max_document_bytes)
        # The type stored is what the bytes are, never what the browser said.
        return Document(name, checked_scan(settings, data), data)

    # --- the register -------------------------------------------------------------------------

    @router.get(BASE)
    async def register(request: Request, staff: ConsentUser) -> Response:
        query = request.query_params
        case = query.get("case", "").strip()[:200]
        person = query.get("person", "").strip()[:255]
        state = query.get("state", "")
        state = state if state in STATES else ""

        def work() -> dict[str, Any]:
            now = clock()
            with session_scope(sessions) as session:
                scope = consent_scope(session, staff)
                found = search_releases(session, master_key(), mailboxes=scope.mailbox_ids,
                                        case=case or None, person=person or None,
                                        state=state or None, now=now, zone=zone,
                                        actor=staff.username, via="web", limit=LIST_LIMIT)
                unknown = bool(case) and not known_cases(session, [normalise_case(case)])
                return {"found": found, "case": case, "person": person, "state": state,
                        "states": STATES, "unknown_case": unknown, "now": now,
                        "state_of": release_state, "no_mailbox": scope.mailbox_ids == frozenset(),
                        "held_count": len(held_in_scope(session, scope, held_reports(session)))}

        return page(request, staff, "register.html", await run_in_threadpool(work))

    def release_form_page(request: Request, staff: Staff, form: ReleaseForm, *,
                          release_id: int | None = None, error: str | None = None,
                          status: int = 200) -> Response:
        with read_scope(sessions) as session:
            if release_id is None:
                mailboxes = _mailboxes(session, consent_scope(session, staff))
            else:
                check_release(session, staff, release_id)
                mailboxes = []
        return page(request, staff, "release_form.html", {
            "form": form, "release_id": release_id, "mailboxes": mailboxes, "error": error,
            "roles": GRANTOR_ROLES, "categories": settings.consent.categories,
            "accepted": ", ".join(ACCEPTED_TYPES),
            "max_document": settings.consent.max_document_bytes}, status)

    @router.get(BASE + "/new")
    async def new_release(request: Request, staff: ConsentUser) -> Response:
        return await run_in_threadpool(release_form_page, request, staff, ReleaseForm())

    @uploads.post(BASE)
    async def record(request: Request, staff: ConsentUser) -> Response:
        form = ReleaseForm.read(await request.form())
        upload = await _scan_upload(request)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    scope = consent_scope(session, staff)
                    mailbox_id = chosen_mailbox(form)
                    if mailbox_id is None or mailbox_id not in {
                            m.id for m in _mailboxes(session, scope)}:
                        raise ConsentError("choose the mailbox the case is handled in",
                                           key="mailbox_missing")
                    data = form.release_input()
                    if upload is None:
                        raise ConsentError("upload the scan of the signed release",
                                           key="document_missing")
                    result = record_release(session, master_key(), settings, data,
                                            document=document_of(upload),
                                            actor=staff.username, now=clock(),
                                            mailbox_id=mailbox_id)
            except ConsentError as exc:
                return release_form_page(request, staff, form, error=refusal_text(request, exc),
                                         status=_status(exc))
            return RedirectResponse(f"{BASE}/{result.version.release.id}?recorded=1",
                                    status_code=303)

        return await run_in_threadpool(work)

    # --- the dry run --------------------------------------------------------------------------

    def check_page(request: Request, staff: Staff, form: CheckForm,
                   result: dict[str, Any] | None = None, error: str | None = None,
                   status: int = 200) -> Response:
        return page(request, staff, "check.html", {
            "form": form, "result": result, "error": error,
            "categories": settings.consent.categories}, status)

    @router.get(BASE + "/check")
    async def check_form(request: Request, staff: ConsentUser) -> Response:
        with read_scope(sessions) as session:
            consent_scope(session, staff)
        return check_page(request, staff, CheckForm())

    @router.post(BASE + "/check")
    async def check(request: Request, staff: ConsentUser) -> Response:
        form = CheckForm.read(await request.form())

        def work() -> Response:
            # A dry run stores nothing, so nothing is audited (as the API and the CLI).
            try:
                if not form.case.strip() or not form.category.strip() \
                        or not form.recipient.strip():
                    raise ConsentError("case, category and recipient are needed",
                                       key="check_incomplete")
                on = day(form.on, "on") if form.on.strip() else None
                with read_scope(sessions) as session:
                    consent_scope(session, staff)
                    decision = dry_run(session, settings.consent, case=form.case,
                                       category=form.category, recipient=form.recipient,
                                       on=on, now=clock())
                    known = bool(known_cases(session, [normalise_case(form.case)]))
            except ConsentError as exc:
                return check_page(request, staff, form, error=refusal_text(request, exc),
                                  status=422)
            return check_page(request, staff, form, {
                "decision": decision, "unknown_case": not known})

        return await run_in_threadpool(work)

    # --- held reports -------------------------------------------------------------------------

    def held_page(request: Request, staff: Staff, *, error: str | None = None,
                  failed: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            reports = held_in_scope(session, consent_scope(session, staff), held_reports(session))
            approvers = _approvers(session, reports)
        return page(request, staff, "held.html", {
            "reports": reports, "approvers": approvers, "error": error, "failed": failed,
            "statutory": HoldKind.STATUTORY_APPROVAL}, status)

    @router.get(BASE + "/held")
    async def held(request: Request, staff: ConsentUser) -> Response:
        return await run_in_threadpool(held_page, request, staff)

    @router.post(BASE + "/held/{queue_id}/approve")
    async def approve(request: Request, staff: ConsentUser, queue_id: str) -> Response:
        if len(queue_id) > 32:
            raise HTTPException(404)
        reason = text_of(await request.form(), "reason")

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    check_held(session, staff, queue_id)
                    # Four eyes: the library refuses the sender and anyone owning its address.
                    approve_statutory(session, queue_id, approver=staff.username,
                                      reason=reason, now=clock())
            except ConsentNotFound:
                raise not_found() from None
            except ConsentError as exc:
                return held_page(request, staff, error=refusal_text(request, exc),
                                 failed=queue_id, status=_status(exc))
            return RedirectResponse(f"{BASE}/held?approved={queue_id}", status_code=303)

        return await run_in_threadpool(work)

    # --- one release --------------------------------------------------------------------------

    def release_page(request: Request, staff: Staff, release_id: int, *,
                     error: str | None = None, status: int = 200) -> Response:
        now = clock()
        with session_scope(sessions) as session:
            scope = check_release(session, staff, release_id)
            versions = read_release(session, master_key(), release_id, actor=staff.username,
                                    via="web")
            current = versions[-1]
            reports = held_in_scope(session, scope,
                                    held_reports(session, case=current.release.case))
            mailbox_id = release_mailbox(session, release_id)
            mailbox_name = session.scalar(select(Mailbox.name).where(Mailbox.id == mailbox_id)) \
                if mailbox_id is not None else None
            # An admin gives a release of no mailbox (recorded before 0023, by the CLI or
            # the API) to its case's team.
            assignable = _mailboxes(session, scope) \
                if mailbox_id is None and scope.everything else []
        return page(request, staff, "release.html", {
            "versions": list(reversed(versions)), "current": current,
            "state": release_state(current.release, now, zone), "reports": reports,
            "mailbox_name": mailbox_name, "assignable": assignable, "error": error,
            "now": now,
            "state_of": release_state}, status)

    @router.get(BASE + "/{release_id}")
    async def release(request: Request, staff: ConsentUser, release_id: str) -> Response:
        return await run_in_threadpool(release_page, request, staff, parse_id(release_id))

    @router.get(BASE + "/{release_id}/change")
    async def change_form(request: Request, staff: ConsentUser, release_id: str) -> Response:
        rid = parse_id(release_id)

        def work() -> Response:
            with session_scope(sessions) as session:
                check_release(session, staff, rid)
                # Filling the form opens the names: read (and audited) like the page.
                current = read_release(session, master_key(), rid, actor=staff.username,
                                       via="web")[-1]
            return release_form_page(request, staff, ReleaseForm.of_version(current),
                                     release_id=rid)

        return await run_in_threadpool(work)

    @uploads.post(BASE + "/{release_id}/versions")
    async def change(request: Request, staff: ConsentUser, release_id: str) -> Response:
        rid = parse_id(release_id)
        form = ReleaseForm.read(await request.form())
        upload = await _scan_upload(request)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    check_release(session, staff, rid)
                    data = form.release_input()
                    result = record_change(session, master_key(), settings, rid, data,
                                           document=document_of(upload),
                                           actor=staff.username, now=clock(),
                                           expected_version=form.version_expected())
            except ConsentNotFound:
                raise not_found() from None
            except ConsentError as exc:
                return release_form_page(request, staff, form, release_id=rid,
                                         error=refusal_text(request, exc),
                                         status=_status(exc))
            return RedirectResponse(
                f"{BASE}/{rid}?changed={result.version.release.version}", status_code=303)

        return await run_in_threadpool(work)

    @router.post(BASE + "/{release_id}/revoke")
    async def revoke(request: Request, staff: ConsentUser, release_id: str) -> Response:
        rid = parse_id(release_id)
        reason = text_of(await request.form(), "reason")

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    check_release(session, staff, rid)
                    record_revocation(session, master_key(), rid, actor=staff.username,
                                      reason=reason, now=clock())
            except ConsentNotFound:
                raise not_found() from None
            except ConsentError as exc:
                return release_page(request, staff, rid, error=refusal_text(request, exc),
                                    status=_status(exc))
            return RedirectResponse(f"{BASE}/{rid}?revoked=1", status_code=303)

        return await run_in_threadpool(work)

    @router.post(BASE + "/{release_id}/mailbox")
    async def assign(request: Request, staff: ConsentUser, release_id: str) -> Response:
        rid = parse_id(release_id)
        chosen = chosen_mailbox(ReleaseForm(mailbox=text_of(await request.form(), "mailbox")))

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    if not check_release(session, staff, rid).everything:
                        raise Forbidden(f"{staff.username} may not give releases to mailboxes")
                    if chosen is None:
                        raise ConsentError("choose a mailbox", key="mailbox_missing")
                    assign_mailbox(session, rid, chosen, actor=staff.username)
            except ConsentNotFound:
                raise not_found() from None
            except ConsentError as exc:
                return release_page(request, staff, rid, error=refusal_text(request, exc),
                                    status=_status(exc))
            return RedirectResponse(f"{BASE}/{rid}?assigned=1", status_code=303)

        return await run_in_threadpool(work)

    @router.get(BASE + "/{release_id}/document")
    async def document(request: Request, staff: ConsentUser, release_id: str) -> Response:
        rid = parse_id(release_id)
        version_text = request.query_params.get("version")
        version = parse_id(version_text) if version_text is not None else None

        def work() -> Response:
            try:
                # Written, not only read: the reading is audited and commits with it, so no
                # scan leaves unrecorded.
                with session_scope(sessions) as session:
                    check_release(session, staff, rid)
                    info, _version, data = read_document(session, master_key(), rid, version,
                                                         actor=staff.username)
            except ConsentNotFound:
                raise not_found() from None
            media = info.content_type.lower() if info.content_type.lower() in PASSIVE_TYPES \
                else "application/octet-stream"
            return Response(data, media_type=media, headers={
                "Content-Disposition": content_disposition(info.filename),
                # A signed form with a family's names: no cache is to keep a copy.
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

        return await run_in_threadpool(work)

    router.include_router(uploads)
    return router

