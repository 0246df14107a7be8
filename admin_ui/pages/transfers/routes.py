"""The console's transfer pages for admins, auditors and the data-protection officer:
the search over every message (GET /console/transfers, a page at a time) and a message's
timeline (GET /console/transfers/{queue_id}), read from the audit trail. No content is shown.

The search and the timeline are gateway.transfers (the one place of their rules); the area's
right is admin_ui.security.rights (ConsoleArea.TRANSFERS: 403 for anyone else). Bad search
input is a message on the page naming the problem (400), nothing searched. Every timeline
viewed is recorded in the audit trail with the viewer; an unknown queue id is 404.

On the timeline an admin may send a message back to the workers at once (POST
/console/transfers/{queue_id}/retry, "Jetzt erneut versuchen"): gateway.queue.admin.retry, the
function of ``xgate queue retry``, which decides which states may be retried and audits it
with the acting admin. The auditor and the DPO only read this area: the POST is 403 for them
(admin_ui.security.rights.check_transfer_retry) and the form is not shown to them. A message
that cannot be retried (delivered, rejected, quarantined, being processed) is the timeline
with the library's reason (409), nothing changed.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.render import Renderer, language_of
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import (
    ConsoleArea,
    area_user,
    check_transfer_retry,
    may_retry_transfers,
)
from gateway import audit
from gateway.audit import AuditAction
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.keydir.partners import list_partners
from gateway.models import Direction, MessageState
from gateway.queue.admin import RETRYABLE_STATES, QueueAdminError, get_message, retry
from gateway.transfers import search as transfers
from gateway.transfers.timeline import aspects_in, timeline
from gateway.web.catalogue import text
from gateway.web.texts import de
from mailboxes.directory import list_mailboxes
from scanning.verdict import Verdict

MAX_FORM = 4 * 1024
# Audit actions with a label of their own; any other is shown as stored.
LABELLED = frozenset(k for k in de.TEXTS if k.startswith("transfers.action."))


def transfers_router(auth: Authenticator, sessions: sessionmaker[Session],
                     renderer: Renderer, clock: Clock) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    Reader = Annotated[Staff, Depends(area_user(ConsoleArea.TRANSFERS))]

    @router.get("/console/transfers")
    async def search(request: Request, staff: Reader) -> Response:
        raw = {name: request.query_params.get(name, "")
               for name in (*transfers.FIELDS, "before", "size")}

        def work() -> Response:
            error = None
            page = None
            try:
                query = transfers.parse_query(raw)
            except transfers.SearchRefused as refused:
                t = text(language_of(request))
                values = dict(refused.values)
                if "field" in values:
                    values["field"] = t(f"transfers.field.{values['field']}")
                error = t(f"transfers.refused.{refused.key}", **values)
            with read_scope(sessions) as session:
                if error is None:
                    page = transfers.search(session, query)
                choices = {"mailboxes": [(m.id, m.name, m.address)
                                         for m in list_mailboxes(session)],
                           "partners": [p.name for p in list_partners(session)]}
            filters = {k: v for k, v in raw.items() if v and k not in ("before",)}
            next_link = None
            if page is not None and page.next_before is not None:
                next_link = "/console/transfers?" + urlencode(
                    {**filters, "before": page.next_before})
            first_link = ("/console/transfers?" + urlencode(filters)
                          if raw.get("before") else None)
            return renderer.page(request, "transfers/search.html", {
                "form": raw, "error": error, "page": page, "next_link": next_link,
                "first_link": first_link, "states": [s.value for s in MessageState],
                "verdicts": [v.value for v in Verdict],
                "directions": [d.value for d in Direction], **choices,
            }, staff=staff, status=400 if error else 200)

        return await run_in_threadpool(work)

    def timeline_page(request: Request, staff: Staff, queue_id: str, *,
                      error: str | None = None, status: int = 200) -> Response:
        with session_scope(sessions) as session:
            journey = timeline(session, queue_id)
            if journey is None:
                raise HTTPException(404)
            audit.record(session, actor=f"user:{staff.username}",
                         action=AuditAction.TRANSFER_TIMELINE_READ,
                         queue_id=journey.queue_id,
                         detail={"steps": len(journey.steps)})
        retried = request.query_params.get("done") == "retried" and error is None
        return renderer.page(request, "transfers/timeline.html", {
            "journey": journey, "aspects": aspects_in(journey.steps),
            "known_texts": LABELLED, "error": error, "retried": retried,
            "may_retry": may_retry_transfers(staff) and journey.state in RETRYABLE_STATES,
        }, staff=staff, status=status)

    @router.get("/console/transfers/{queue_id}")
    async def show(request: Request, staff: Reader, queue_id: str) -> Response:
        return await run_in_threadpool(timeline_page, request, staff, queue_id)

    @router.post("/console/transfers/{queue_id}/retry")
    async def retry_now(request: Request, staff: Reader, queue_id: str) -> Response:
        admin = check_transfer_retry(staff)

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    try:
                        found = get_message(session, queue_id).queue_id
                    except QueueAdminError:
                        raise HTTPException(404) from None
                    retry(session, found, operator=f"admin:{admin.username}", now=clock())
            except QueueAdminError as refused:
                t = text(language_of(request))
                return timeline_page(request, staff, queue_id, status=409,
                                     error=t("transfers_retry.refused", reason=str(refused)))
            return RedirectResponse(f"/console/transfers/{found}?done=retried",
                                    status_code=303)

        return await run_in_threadpool(work)

    return router
