"""The quarantine pages (/console/quarantine), for admins only (ConsoleArea.QUARANTINE).

Every decision is gateway.quarantine.records' own, as for ``xgate quarantine``: the first
admin's release approval is recorded with a reason, a second, different admin's approval
re-scans the stored content and releases it only if it is clean; deleting needs a reason.
The pages show envelopes, states, reasons and verdicts, never message content. Each form is
POST with the CSRF token and answered by a redirect; a refusal is the same page with the
reason and nothing stored (the request's one transaction is rolled back).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.api.consents import MasterKeySource
from admin_ui.pages.quarantine import rescan_task
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.tasks.routes import task_path
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, area_user
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.models import Direction
from gateway.quarantine.records import (
    MAX_REASON_LENGTH,
    REQUIRED_APPROVALS,
    QuarantineError,
    QuarantineNotFound,
    ReleaseOutcome,
    Rescanner,
    ScanOutcome,
    approve_release,
    count_quarantined,
    delete,
    list_quarantined,
    show,
)
from gateway.settings import Settings
from gateway.tasks.runner import TaskRunner
from gateway.web.catalogue import text
from scanning.errors import ScanningError

MAX_FORM = 16 * 1024
PAGE_SIZE = 50
# Queue ids are 16 upper-case hex digits (gateway.queue.spool.new_queue_id); anything else
# is a page that does not exist, like an unknown id.
_QUEUE_ID = re.compile(r"[0-9A-Fa-f]{1,32}")
_DONE = ("approval", "released", "refused", "deleted")


class LazyRescanner:
    """The pipeline's re-scanner (gateway.quarantine.rescan), built on first use: a first
    approval needs no scan and must work while the scanner is down."""

    def __init__(self, build: Callable[[], Rescanner]) -> None:
        self._build = build
        self._scanner: Rescanner | None = None

    def __call__(self, content: bytes, direction: Direction, recipients: list[str], /
                 ) -> ScanOutcome:
        if self._scanner is None:
            self._scanner = self._build()
        return self._scanner(content, direction, recipients)


def pipeline_rescanner(settings: Settings) -> Rescanner:
    from gateway.quarantine.rescan import make_rescanner

    return make_rescanner(settings)


def queue_id_of(text: str) -> str:
    if not _QUEUE_ID.fullmatch(text):
        raise HTTPException(404)
    return text.upper()


def page_number(text: str | None) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 6:
        return 1
    return max(1, int(text))


def refusal_text(request: Request, refusal: QuarantineError) -> str:
    """The refusal in the user's language; the library's (English) words if it has no key."""
    if not refusal.key:
        return str(refusal)
    return text(language_of(request))(f"quarantine.refusal.{refusal.key}", **refusal.values)


def reason_of(value: object) -> str:
    return value if isinstance(value, str) else ""


def quarantine_router(auth: Authenticator, sessions: sessionmaker[Session],
                      master_key: MasterKeySource, settings: Settings, clock: Clock,
                      renderer: Renderer, tasks: TaskRunner) -> APIRouter:
    router = APIRouter(prefix="/console/quarantine", route_class=guarded_route(auth, MAX_FORM))
    Admin = Annotated[Staff, Depends(area_user(ConsoleArea.QUARANTINE))]
    rescanner = LazyRescanner(lambda: pipeline_rescanner(settings))
    tasks.register(rescan_task.KIND,
                   rescan_task.rescan_work(master_key, lambda: pipeline_rescanner(settings)))

    @router.post("/rescan")
    async def rescan(staff: Admin) -> Response:
        task_id = await run_in_threadpool(tasks.start, rescan_task.KIND, staff.username, {})
        return RedirectResponse(task_path(task_id), status_code=303)

    @router.get("")
    async def listing(request: Request, staff: Admin) -> Response:
        page = page_number(request.query_params.get("page"))
        held = request.query_params.get("held") == "1"

        def values() -> dict[str, object]:
            with read_scope(sessions) as session:
                total = count_quarantined(session, include_held=held)
                views = list_quarantined(session, include_held=held,
                                         offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
            pages = max(1, -(-total // PAGE_SIZE))
            return {"views": views, "total": total, "page": page, "pages": pages,
                    "held": held, "required": REQUIRED_APPROVALS}

        return renderer.page(request, "quarantine/list.html",
                             await run_in_threadpool(values), staff=staff)

    def detail_page(request: Request, staff: Staff, queue_id: str, *, error: str | None = None,
                    reason: str = "", status: int = 200) -> Response:
        with read_scope(sessions) as session:
            try:
                view = show(session, queue_id)
            except QuarantineNotFound:
                raise HTTPException(404) from None
        done = request.query_params.get("done")
        return renderer.page(request, "quarantine/detail.html", {
            "view": view, "required": REQUIRED_APPROVALS, "error": error, "reason": reason,
            "max_reason": MAX_REASON_LENGTH, "done": done if done in _DONE else None,
            "own_approval": staff.username in view.pending_approvals,
        }, staff=staff, status=status)

    @router.get("/{queue_id}")
    async def detail(request: Request, staff: Admin, queue_id: str) -> Response:
        return await run_in_threadpool(detail_page, request, staff, queue_id_of(queue_id))

    @router.post("/{queue_id}/release")
    async def release(request: Request, staff: Admin, queue_id: str) -> Response:
        qid = queue_id_of(queue_id)
        reason = reason_of((await request.form()).get("reason"))

        def work() -> Response:
            key = master_key()
            try:
                with session_scope(sessions) as session:
                    result = approve_release(session, qid, admin=staff.username,
                                             reason=reason, now=clock(), master_key=key,
                                             rescan=rescanner)
            except QuarantineNotFound:
                raise HTTPException(404) from None
            except QuarantineError as exc:
                return detail_page(request, staff, qid, error=refusal_text(request, exc),
                                   reason=reason, status=409)
            except ScanningError as exc:
                # No verdict, no release: the whole step, approval included, is undone.
                return detail_page(request, staff, qid, reason=reason, status=503,
                                   error=text(language_of(request))(
                                       "quarantine.refusal.scanner", detail=str(exc)))
            done = {ReleaseOutcome.APPROVAL_RECORDED: "approval",
                    ReleaseOutcome.RELEASED: "released",
                    ReleaseOutcome.REFUSED: "refused"}[result.outcome]
            return RedirectResponse(f"/console/quarantine/{qid}?done={done}", status_code=303)

        return await run_in_threadpool(work)

    @router.post("/{queue_id}/delete")
    async def remove(request: Request, staff: Admin, queue_id: str) -> Response:
        qid = queue_id_of(queue_id)
        reason = reason_of((await request.form()).get("reason"))

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    delete(session, qid, admin=staff.username, reason=reason, now=clock())
            except QuarantineNotFound:
                raise HTTPException(404) from None
            except QuarantineError as exc:
                return detail_page(request, staff, qid, error=refusal_text(request, exc),
                                   reason=reason, status=409)
            return RedirectResponse(f"/console/quarantine/{qid}?done=deleted",
                                    status_code=303)

        return await run_in_threadpool(work)

    return router
