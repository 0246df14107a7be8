"""The partner pages (/console/partners), for admins only (ConsoleArea.PARTNERS): the list,
adding, changing (policy, name, domains and addresses) and removing a partner, and the dry
run of ``xgate policy explain`` as a form.

Every change is a function of gateway.keydir.partners, as for ``xgate partner`` and the JSON
API, audited there with the acting admin in the request's one transaction; a refusal is the
form again with the reason and nothing stored. URLs carry the partner's id: an unknown one is
404.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.api.consents import MasterKeySource
from admin_ui.pages.ids import parse_id
from admin_ui.pages.keys.refusal import refusal_text
from admin_ui.pages.partners.form import INVALID_SIGNATURE, POLICIES, PartnerForm
from admin_ui.pages.render import Renderer
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, area_user
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.keydir import partners
from gateway.keydir.addresses import check_address
from gateway.keydir.errors import KeyDirError, NotFound
from gateway.keydir.views import partner_view
from gateway.policy.explain import explain
from gateway.settings import Settings

MAX_FORM = 64 * 1024
BASE = "/console/partners"


def partners_page_router(auth: Authenticator, sessions: sessionmaker[Session],
                         master_key: MasterKeySource, settings: Settings, clock: Clock,
                         renderer: Renderer) -> APIRouter:
    router = APIRouter(prefix=BASE, route_class=guarded_route(auth, MAX_FORM))
    Admin = Annotated[Staff, Depends(area_user(ConsoleArea.PARTNERS))]
    choices = {"policies": POLICIES, "invalid_signature": INVALID_SIGNATURE}

    def form_page(request: Request, staff: Staff, form: PartnerForm, *,
                  partner_id: int | None = None, error: str | None = None,
                  status: int = 200) -> Response:
        return renderer.page(request, "partners/form.html", {
            "form": form, "partner_id": partner_id, "error": error,
            "saved": request.query_params.get("saved") == "1", **choices,
        }, staff=staff, status=status)

    @router.get("")
    async def listing(request: Request, staff: Admin) -> Response:
        sender = request.query_params.get("sender")
        recipient = request.query_params.get("recipient")

        def values() -> dict[str, object]:
            found: dict[str, object] = {"sender": sender or "", "recipient": recipient or "",
                                        "explained": None, "explain_error": None,
                                        "no_partner": None}
            with read_scope(sessions) as session:
                found["partners"] = [{"id": p.id, **partner_view(p)}
                                     for p in partners.list_partners(session)]
                if sender is not None or recipient is not None:
                    try:
                        explained = explain(
                            session, settings, master_key(), check_address(sender or ""),
                            check_address(recipient or ""), clock())
                    except KeyDirError as exc:
                        found["explain_error"] = refusal_text(request, exc)
                    else:
                        found["explained"] = explained
                        # The other side's address: is any partner's pattern matching it?
                        other = (recipient if explained.direction == "outbound"
                                 else sender) or ""
                        if partners.partner_for(session, other) is None:
                            found["no_partner"] = other.strip().lower()
            return found

        return renderer.page(request, "partners/list.html", await run_in_threadpool(values),
                             staff=staff)

    @router.get("/new")
    async def new(request: Request, staff: Admin) -> Response:
        return form_page(request, staff, PartnerForm())

    @router.post("")
    async def create(request: Request, staff: Admin) -> Response:
        form = PartnerForm.read(await request.form())

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    partner = partners.add_partner(
                        session, form.name, actor=staff.username, now=clock(),
                        patterns=partners.require_patterns(form.pattern_list()),
                        **form.policy())
                    partner_id = partner.id
            except KeyDirError as exc:
                return form_page(request, staff, form, error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}/{partner_id}?saved=1", status_code=303)

        return await run_in_threadpool(work)

    @router.get("/{partner_id}")
    async def edit(request: Request, staff: Admin, partner_id: str) -> Response:
        pid = parse_id(partner_id)

        def form() -> PartnerForm:
            with read_scope(sessions) as session:
                try:
                    return PartnerForm.of(partners.get_partner_by_id(session, pid))
                except NotFound:
                    raise HTTPException(404) from None

        return form_page(request, staff, await run_in_threadpool(form), partner_id=pid)

    @router.post("/{partner_id}")
    async def update(request: Request, staff: Admin, partner_id: str) -> Response:
        pid = parse_id(partner_id)
        form = PartnerForm.read(await request.form())

        def work() -> Response:
            now = clock()
            try:
                with session_scope(sessions) as session:
                    try:
                        name = partners.get_partner_by_id(session, pid).name
                    except NotFound:
                        raise HTTPException(404) from None
                    partner = partners.update_partner(
                        session, name, actor=staff.username, now=now, new_name=form.name,
                        **form.policy())
                    partners.replace_partner_patterns(session, partner.name,
                                                      form.pattern_list(),
                                                      actor=staff.username, now=now)
            except KeyDirError as exc:
                return form_page(request, staff, form, partner_id=pid,
                                 error=refusal_text(request, exc), status=409)
            return RedirectResponse(f"{BASE}/{pid}?saved=1", status_code=303)

        return await run_in_threadpool(work)

    @router.post("/{partner_id}/delete")
    async def remove(staff: Admin, partner_id: str) -> Response:
        pid = parse_id(partner_id)

        def work() -> None:
            with session_scope(sessions) as session:
                try:
                    name = partners.get_partner_by_id(session, pid).name
                except NotFound:
                    raise HTTPException(404) from None
                partners.delete_partner(session, name, actor=staff.username)

        await run_in_threadpool(work)
        return RedirectResponse(f"{BASE}?removed=1", status_code=303)

    return router
