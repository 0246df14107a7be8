"""Shared mailboxes in the console (/console/users/mailboxes), for admins only
(ConsoleArea.USERS): what ``xgate mailbox add|list|set`` does, in the browser.

The list shows every shared mailbox with its members and stored messages; a form creates one
(address, name, the sensitive mark), and each mailbox's page renames it or changes the mark.
Both are the library's own, as for the CLI (mailboxes.actions: the checks of address and name
are mailboxes.directory's, and each change is audited there with the acting admin). A refusal
is the same page with the reason (400 for bad input, 409 for an address taken) and nothing
stored: the request's one transaction is rolled back. An unknown mailbox id is 404.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer, language_of
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, area_user
from gateway.db import read_scope, session_scope
from gateway.web.catalogue import text
from mailboxes.actions import create_mailbox, update_mailbox
from mailboxes.directory import (
    MAX_NAME_LENGTH,
    BadMailboxAddress,
    BadMailboxName,
    MailboxError,
    MailboxExists,
    count_messages,
    list_mailboxes,
)
from mailboxes.models import Mailbox, MailboxMember
from mailboxes.outreach import set_outreach

# The receipt text and the signature (mailboxes.outreach's limits), percent-encoded.
MAX_FORM = 64 * 1024
BASE = "/console/users/mailboxes"
DONE = ("created", "changed", "unchanged")


@dataclass(frozen=True)
class MailboxRow:
    mailbox_id: int
    address: str
    name: str
    sensitive: bool
    members: int
    messages: int
    # The receipt (Eingangsbestätigung) for new tickets and the signature under replies
    # (mailboxes.outreach), as ``xgate mailbox set --receipt/--receipt-text/--signature``.
    receipt: bool = True
    receipt_template: str | None = None
    signature: str | None = None


def mailbox_rows(session: Session, mailbox_id: int | None = None) -> list[MailboxRow]:
    """Every shared mailbox (or the one ``mailbox_id``) with its member and message counts."""
    members: dict[int, int] = {box: count for box, count in session.execute(
        select(MailboxMember.mailbox_id, func.count()).group_by(MailboxMember.mailbox_id))}
    boxes = list_mailboxes(session) if mailbox_id is None else [
        m for m in [session.get(Mailbox, mailbox_id)] if m is not None]
    return [MailboxRow(m.id, m.address, m.name, m.sensitive, members.get(m.id, 0),
                       count_messages(session, m.id), m.receipt_enabled, m.receipt_template,
                       m.signature) for m in boxes]


def refusal(request: Request, exc: MailboxError) -> tuple[str, int]:
    """The page's sentence for a refusal of the library, and the answer's status."""
    t = text(language_of(request))
    if isinstance(exc, MailboxExists):
        return t("mailboxes_admin.error.exists"), 409
    if isinstance(exc, BadMailboxAddress):
        return t("mailboxes_admin.error.address"), 400
    if isinstance(exc, BadMailboxName):
        return t("mailboxes_admin.error.name", max=MAX_NAME_LENGTH), 400
    return t("mailboxes_admin.error.other", reason=str(exc)), 409


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def shared_mailboxes_router(auth: Authenticator, sessions: sessionmaker[Session],
                     renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    AdminUser = Annotated[Staff, Depends(area_user(ConsoleArea.USERS))]

    def list_page(request: Request, admin: Staff, *, form: dict[str, Any] | None = None,
                  error: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            rows = mailbox_rows(session)
        done = request.query_params.get("done")
        return renderer.page(request, "users/mailboxes.html", {
            "mailboxes": rows, "form": form or {}, "error": error,
            "done": done if done in DONE and error is None else None,
        }, staff=admin, status=status)

    def edit_page(request: Request, admin: Staff, mailbox_id: int, *,
                  form: dict[str, Any] | None = None, error: str | None = None,
                  status: int = 200) -> Response:
        with read_scope(sessions) as session:
            rows = mailbox_rows(session, mailbox_id)
        if not rows:
            raise HTTPException(404)
        done = request.query_params.get("done")
        return renderer.page(request, "users/mailbox.html", {
            "mailbox": rows[0], "error": error,
            "form": form or {"name": rows[0].name, "sensitive": rows[0].sensitive,
                             "receipt": rows[0].receipt,
                             "receipt_template": rows[0].receipt_template or "",
                             "signature": rows[0].signature or ""},
            "done": done if done in DONE and error is None else None,
        }, staff=admin, status=status)

    @router.get(BASE)
    async def mailbox_list(request: Request, admin: AdminUser) -> Response:
        return await run_in_threadpool(list_page, request, admin)

    @router.post(BASE)
    async def mailbox_create(request: Request, admin: AdminUser) -> Response:
        form = await request.form()
        address, name = _field(form, "address").strip(), _field(form, "name")
        sensitive = bool(_field(form, "sensitive"))
        typed: dict[str, Any] = {"address": address, "name": name, "sensitive": sensitive}

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    create_mailbox(session, address, name, sensitive=sensitive,
                                   actor=admin.username)
            except MailboxError as exc:
                error, status = refusal(request, exc)
                return list_page(request, admin, form=typed, error=error, status=status)
            return RedirectResponse(f"{BASE}?done=created", status_code=303)

        return await run_in_threadpool(work)

    def changed(request: Request, admin: Staff, box_id: int, typed: dict[str, Any],
                change: Callable[[Session, Mailbox], object]) -> Response:
        """One change to mailbox ``box_id`` (404 if there is none): back to its page with
        "changed" or "unchanged", or the page again with the refusal and what was typed."""
        try:
            with session_scope(sessions) as session:
                mailbox = session.get(Mailbox, box_id)
                if mailbox is None:
                    raise HTTPException(404)
                changes = change(session, mailbox)
        except MailboxError as exc:
            error, status = refusal(request, exc)
            return edit_page(request, admin, box_id, form=typed, error=error, status=status)
        done = "changed" if changes else "unchanged"
        return RedirectResponse(f"{BASE}/{box_id}?done={done}", status_code=303)

    @router.get(BASE + "/{mailbox_id}")
    async def mailbox_detail(request: Request, admin: AdminUser, mailbox_id: str) -> Response:
        return await run_in_threadpool(edit_page, request, admin, parse_id(mailbox_id))

    @router.post(BASE + "/{mailbox_id}")
    async def mailbox_change(request: Request, admin: AdminUser, mailbox_id: str) -> Response:
        box_id = parse_id(mailbox_id)
        form = await request.form()
        name, sensitive = _field(form, "name"), bool(_field(form, "sensitive"))
        typed: dict[str, Any] = {"name": name, "sensitive": sensitive}

        def change(session: Session, mailbox: Mailbox) -> object:
            return update_mailbox(session, mailbox.address, name=name, sensitive=sensitive,
                                  actor=admin.username)

        return await run_in_threadpool(changed, request, admin, box_id, typed, change)

    @router.post(BASE + "/{mailbox_id}/outreach")
    async def mailbox_outreach(request: Request, admin: AdminUser,
                               mailbox_id: str) -> Response:
        """The receipt switch, its text (empty: the default text) and the signature."""
        box_id = parse_id(mailbox_id)
        form = await request.form()
        receipt = bool(_field(form, "receipt"))
        template, signature = _field(form, "receipt_template"), _field(form, "signature")
        typed: dict[str, Any] = {"receipt": receipt, "receipt_template": template,
                                 "signature": signature}

        def change(session: Session, mailbox: Mailbox) -> object:
            typed.update(name=mailbox.name, sensitive=mailbox.sensitive)
            return set_outreach(
                session, mailbox.address, actor=admin.username, receipt_enabled=receipt,
                receipt_template=template if template.strip() else None,
                reset_template=not template.strip(), signature=signature)

        return await run_in_threadpool(changed, request, admin, box_id, typed, change)

    return router
