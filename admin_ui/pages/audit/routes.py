"""The console's audit viewer for admins, auditors and the data-protection officer:
GET /console/audit pages through the trail (filters: action, actor, dates; newest first;
entries as recorded, personal parts opened through gateway.audit.view), and
POST /console/audit/verify starts *verify chain* as a background task (the same check as
``xgate audit verify``) and answers with its page, /console/tasks/{id}; POST
/console/audit/forget destroys the personal data of the months before a given one (the same
function as ``xgate audit forget``, gateway.audit.retention), for admins only, after a ticked
confirmation; the deletion is recorded in the trail with the acting admin.

The area's right is admin_ui.security.rights (ConsoleArea.AUDIT). Every page read is
recorded in the trail with the reader; bad filter input is named on the page (400).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.audit.verify_task import KIND, verify_chain
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.tasks.routes import task_path
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import (
    ConsoleArea,
    area_user,
    check_audit_forget,
    may_forget_audit,
)
from gateway import audit
from gateway.audit import AuditAction
from gateway.audit.browse import (
    ACTOR_SCAN_LIMIT,
    FIELDS,
    AuditPage,
    BrowseRefused,
    browse,
    parse_audit_query,
)
from gateway.audit.keys import period_of
from gateway.audit.retention import ForgetRefused, forget_before
from gateway.clock import Clock
from gateway.db import session_scope
from gateway.tasks.runner import TaskRunner
from gateway.web.catalogue import text

MAX_FORM = 4 * 1024


def audit_router(auth: Authenticator, sessions: sessionmaker[Session], tasks: TaskRunner,
                 renderer: Renderer, clock: Clock) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    Reader = Annotated[Staff, Depends(area_user(ConsoleArea.AUDIT))]
    tasks.register(KIND, verify_chain)

    @router.get("/console/audit")
    async def entries(request: Request, staff: Reader) -> Response:
        raw = {name: request.query_params.get(name, "") for name in (*FIELDS, "before", "size")}

        def work() -> Response:
            error = None
            page: AuditPage | None = None
            try:
                query = parse_audit_query(raw)
            except BrowseRefused as refused:
                t = text(language_of(request))
                values = dict(refused.values)
                if "field" in values:
                    values["field"] = t(f"audit_view.field.{values['field']}")
                error = t(f"audit_view.refused.{refused.key}", **values)
            if error is None:
                with session_scope(sessions) as session:
                    page = browse(session, query)
                    if page.entries:
                        audit.record(session, actor=f"user:{staff.username}",
                                     action=AuditAction.AUDIT_TRAIL_READ,
                                     detail={"entries": len(page.entries),
                                             "newest": page.entries[0].seq,
                                             "oldest": page.entries[-1].seq})
            filters = {k: v for k, v in raw.items() if v and k != "before"}
            next_link = None
            if page is not None and page.next_before is not None:
                next_link = "/console/audit?" + urlencode({**filters,
                                                           "before": page.next_before})
            return renderer.page(request, "audit/entries.html", {
                "form": raw, "error": error, "page": page, "next_link": next_link,
                "first_link": "/console/audit?" + urlencode(filters) if raw["before"] else None,
                "actions": [a.value for a in AuditAction], "scan_limit": ACTOR_SCAN_LIMIT,
                "may_forget": may_forget_audit(staff), "current_month": period_of(clock()),
            }, staff=staff, status=400 if error else 200)

        return await run_in_threadpool(work)

    @router.post("/console/audit/verify")
    async def verify(staff: Reader) -> Response:
        task_id = await run_in_threadpool(tasks.start, KIND, staff.username, {})
        return RedirectResponse(task_path(task_id), status_code=303)

    @router.post("/console/audit/forget")
    async def forget(request: Request, staff: Reader) -> Response:
        # A read area for auditors and the DPO: the change is the admins' alone, refused
        # before the form is read.
        admin = check_audit_forget(staff)
        form = await request.form()
        month = form.get("month")
        given = month.strip() if isinstance(month, str) else ""
        confirmed = form.get("confirm") == "yes"

        def work() -> Response:
            t = text(language_of(request))
            now = clock()
            error = None
            forgotten: list[str] = []
            if not given:
                error = t("audit_forget.refused.no_month")
            elif not confirmed:
                error = t("audit_forget.refused.unconfirmed", month=given)
            else:
                try:
                    with session_scope(sessions) as session:
                        forgotten = forget_before(session, given, actor=f"user:{admin.username}",
                                                  now=now)
                except ForgetRefused as refused:
                    error = t(f"audit_forget.refused.{refused.key}", month=refused.month,
                              current=period_of(now))
            return renderer.page(request, "audit/forget.html", {
                "error": error, "month": given, "forgotten": forgotten,
                "current_month": period_of(now),
            }, staff=staff, status=400 if error else 200)

        return await run_in_threadpool(work)

    return router
