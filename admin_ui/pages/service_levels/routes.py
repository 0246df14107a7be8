"""A mailbox lead's service-level pages: the settings (opening hours, Land, closing days,
targets, escalation contacts, plausibility settings) and the findings page (open plausibility
findings and the escalated deadlines, each linking its ticket).

Leads only: a member who is an agent gets 403 (they know the mailbox; the settings are not
theirs to see), anyone else 404 as for every mailbox id (admin_ui.security.rights). The form
is POST with the CSRF token, answered by a redirect, or on a refusal by the same form with the
reason (409) and nothing stored.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer, language_of
from admin_ui.security.authentication import Authenticator
from admin_ui.security.errors import Forbidden
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import MailboxAccess, check_mailbox, staff_user
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.web.catalogue import text
from mailboxes.models import Mailbox, MemberRole
from mailboxes.service_levels import config
from mailboxes.service_levels.business_hours import LÄNDER, OFFICE_TIME
from mailboxes.service_levels.config import ServiceLevelError, ServiceLevelForm
from mailboxes.service_levels.views import escalations, open_findings
from mailboxes.tickets.summaries import mailbox_info

MAX_FORM = 32 * 1024
_FORM_FIELDS = ("land", "closing_days", "first_response_hours", "resolution_hours",
                "warning_hours", "untouched_days", "escalation_contacts",
                "case_reference_patterns")


def check_lead(session: Session, staff: Staff, mailbox_id: int) -> MailboxAccess:
    access = check_mailbox(session, staff, mailbox_id)
    if access.role != MemberRole.LEAD:
        raise Forbidden(f"{staff.username} does not lead mailbox {mailbox_id}")
    return access


def refusal_text(request: Request, refusal: ServiceLevelError) -> str:
    t = text(language_of(request))
    values = dict(refusal.values)
    if "field" in values:
        values["field"] = t(f"sla.field.{values['field']}")
    if "day" in values:
        values["day"] = t(f"sla.day.{values['day']}")
    return t(f"sla_error.{refusal.key}", **values)


def _typed(form: FormData) -> ServiceLevelForm:
    def get(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""
    typed = ServiceLevelForm(hours={d: get(f"hours_{d}") for d in config.DAY_NAMES})
    for name in _FORM_FIELDS:
        setattr(typed, name, get(name))
    return typed


def service_levels_router(auth: Authenticator, sessions: sessionmaker[Session],
                          clock: Clock, renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    StaffUser = Annotated[Staff, Depends(staff_user)]

    def settings_page(request: Request, staff: Staff, mailbox_id: int, *,
                      typed: ServiceLevelForm | None = None, error: str | None = None,
                      status: int = 200) -> Response:
        with read_scope(sessions) as session:
            access = check_lead(session, staff, mailbox_id)
            current = config.load(session, mailbox_id)
            values = {"mailbox": mailbox_info(session, mailbox_id), "role": access.role.value,
                      "configured": current is not None,
                      "form": typed or (config.to_form(current) if current
                                        else config.default_form()),
                      "days": config.DAY_NAMES, "laender": LÄNDER, "error": error}
        return renderer.page(request, "service_levels/settings.html", values, staff=staff,
                             status=status)

    @router.get("/mailboxes/{mailbox_id}/service-levels")
    async def settings(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        return await run_in_threadpool(settings_page, request, staff, parse_id(mailbox_id))

    @router.post("/mailboxes/{mailbox_id}/service-levels")
    async def save(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        box_id = parse_id(mailbox_id)
        typed = _typed(await request.form())

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    check_lead(session, staff, box_id)
                    mailbox = session.get(Mailbox, box_id)
                    assert mailbox is not None  # check_lead found the membership
                    config.save(session, mailbox, config.parse_form(typed),
                                actor=f"user:{staff.username}", now=clock())
            except ServiceLevelError as exc:
                return settings_page(request, staff, box_id, typed=typed,
                                     error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"/mailboxes/{box_id}/service-levels?saved=1",
                                    status_code=303)

        return await run_in_threadpool(work)

    def findings_values(staff: Staff, mailbox_id: int) -> dict[str, object]:
        with read_scope(sessions) as session:
            access = check_lead(session, staff, mailbox_id)
            return {"mailbox": mailbox_info(session, mailbox_id), "role": access.role.value,
                    "configured": config.load(session, mailbox_id) is not None,
                    "findings": open_findings(session, mailbox_id),
                    "escalations": escalations(session, mailbox_id), "zone": OFFICE_TIME}

    @router.get("/mailboxes/{mailbox_id}/findings")
    async def findings(request: Request, staff: StaffUser, mailbox_id: str) -> Response:
        values = await run_in_threadpool(findings_values, staff, parse_id(mailbox_id))
        return renderer.page(request, "service_levels/findings.html", values, staff=staff)

    return router
