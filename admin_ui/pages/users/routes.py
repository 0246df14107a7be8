"""The users and roles pages (/console/users), for admins only (ConsoleArea.USERS).

The list shows every staff account with its global roles, mailbox memberships, state, second
factor and last web login. An admin creates an account with a generated password shown once
on a page that is not cached (only its argon2 hash is stored); at the first login the new
user must set up the second factor (the login flow sends every account without one to the
enrolment page), so the password alone, read over a shoulder, opens nothing. The same page
disables and enables, gives a new generated password, resets the second factor, grants and
revokes global roles and mailbox memberships, the sender addresses the user may submit
mail with, and their tokens for the JSON API (a new one shown once, as ``xgate user token``).

Every change is the library's own, as for ``xgate user`` and ``xgate mailbox member``
(gateway.staff.actions, gateway.staff.roles, mailboxes.members): the last active admin stays,
the web sessions of a disabled user or after a new password or second-factor reset end at
once, and every change is in the audit trail with the acting admin. Each form is POST with
the CSRF token, answered by a redirect (or the once-only password page); a refusal is the
same page with the reason (409) and nothing stored: the request's one transaction is rolled
back. An unknown user id is 404.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time.
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from admin_ui.pages.ids import parse_id
from admin_ui.pages.render import Renderer, language_of
from admin_ui.pages.users.mailboxes import shared_mailboxes_router
from admin_ui.pages.users.own_password import own_password_router
from admin_ui.pages.users.views import mailbox_choices, token_rows, user_rows
from admin_ui.security.authentication import Authenticator
from admin_ui.security.guard import guarded_route
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, area_user
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.errors import GatewayError
from gateway.models import StaffUser
from gateway.staff import actions, roles, tokens
from gateway.staff import users as staff
from gateway.staff.roles import GlobalRole
from gateway.web.catalogue import text
from mailboxes import members
from mailboxes.models import Mailbox, MemberRole

MAX_FORM = 16 * 1024
BASE = "/console/users"
# The notices a redirect may ask the user page to show (?done=...), nothing else.
DONE = ("disabled", "enabled", "second_factor", "role_granted", "role_revoked", "member_added",
        "member_removed", "address_added", "address_removed", "token_revoked", "unchanged")


class Refused(Exception):
    """A form value the page itself refuses, with the catalogue key saying why."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def refusal_text(request: Request, exc: Exception) -> str:
    t = text(language_of(request))
    if isinstance(exc, Refused):
        return t(exc.key, **exc.values)
    if isinstance(exc, staff.UserExists):
        return t("users.error.exists")
    if isinstance(exc, staff.BadUsername):
        return t("users.error.username", max=staff.MAX_USERNAME_LENGTH)
    if isinstance(exc, staff.LastAdmin):
        return t("users.error.last_admin")
    if isinstance(exc, staff.BadAddress):
        return t("users.error.address")
    if isinstance(exc, tokens.BadTokenName):
        return t("users.error.token_name", max=tokens.MAX_NAME_LENGTH)
    if isinstance(exc, tokens.UnknownToken):
        return t("users.error.token")
    # Any other refusal of the library: its own (English) sentence after a German lead-in.
    return t("users.error.other", reason=str(exc))


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _global_role(text_value: str) -> GlobalRole:
    try:
        return GlobalRole(text_value)
    except ValueError:
        raise Refused("users.error.role") from None


def _member_role(text_value: str) -> MemberRole:
    try:
        return MemberRole(text_value)
    except ValueError:
        raise Refused("users.error.member_role") from None


def _mailbox(session: Session, text_value: str) -> Mailbox:
    mailbox = session.get(Mailbox, int(text_value)) if (
        text_value.isascii() and text_value.isdigit() and len(text_value) < 16) else None
    if mailbox is None:
        raise Refused("users.error.mailbox")
    return mailbox


def _user(session: Session, user_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise HTTPException(404)
    return user


def users_router(auth: Authenticator, sessions: sessionmaker[Session], clock: Clock,
                 renderer: Renderer) -> APIRouter:
    router = APIRouter(route_class=guarded_route(auth, MAX_FORM))
    AdminUser = Annotated[Staff, Depends(area_user(ConsoleArea.USERS))]
    # First: /console/users/mailboxes must not be taken for a user id.
    router.include_router(shared_mailboxes_router(auth, sessions, renderer))

    def once(request: Request, admin: Staff, values: Mapping[str, Any]) -> Response:
        # The password is shown on this page and nowhere else: no cache may keep it.
        response = renderer.page(request, "users/password.html", values, staff=admin)
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- the list and a new user ----------------------------------------------------------

    @router.get(BASE)
    async def user_list(request: Request, admin: AdminUser) -> Response:
        def read() -> dict[str, Any]:
            with read_scope(sessions) as session:
                return {"users": user_rows(session)}
        values = await run_in_threadpool(read)
        return renderer.page(request, "users/list.html", values, staff=admin)

    def new_page(request: Request, admin: Staff, *, form: Mapping[str, Any] | None = None,
                 error: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            boxes = mailbox_choices(session)
        values = {"form": form or {"roles": []}, "error": error, "mailboxes": boxes,
                  "global_roles": list(GlobalRole), "member_roles": list(MemberRole)}
        return renderer.page(request, "users/new.html", values, staff=admin, status=status)

    @router.get(BASE + "/new")
    async def new_user_form(request: Request, admin: AdminUser) -> Response:
        return await run_in_threadpool(new_page, request, admin)

    @router.post(BASE + "/new")
    async def create_user(request: Request, admin: AdminUser) -> Response:
        form = await request.form()
        username = _field(form, "username")
        chosen = [v for v in form.getlist("role") if isinstance(v, str)]
        box, box_role = _field(form, "mailbox"), _field(form, "mailbox_role")
        typed = {"username": username, "roles": chosen, "mailbox": box,
                 "mailbox_role": box_role}

        def work() -> Response:
            password = staff.generate_password()
            try:
                # One transaction: the account, its roles and its membership, or nothing.
                with session_scope(sessions) as session:
                    granted = [_global_role(r) for r in chosen]
                    mailbox = _mailbox(session, box) if box else None
                    member_role = _member_role(box_role or MemberRole.AGENT.value)
                    user = actions.create_user(session, username, password,
                                               actor=admin.username, now=clock())
                    for role in granted:
                        roles.grant(session, username, role, actor=admin.username)
                    if mailbox is not None:
                        members.add_member(session, mailbox.address, username, member_role,
                                           actor=admin.username, now=clock())
                    user_id = user.id
            except (GatewayError, Refused) as exc:
                return new_page(request, admin, form=typed, error=refusal_text(request, exc),
                                status=409)
            return once(request, admin, {"username": username, "user_id": user_id,
                                         "password": password, "new": True})

        return await run_in_threadpool(work)

    # --- one user -------------------------------------------------------------------------

    def user_page(request: Request, admin: Staff, user_id: int, *,
                  error: str | None = None, status: int = 200) -> Response:
        with read_scope(sessions) as session:
            rows = user_rows(session, user_id)
            if not rows:
                raise HTTPException(404)
            boxes = mailbox_choices(session)
            api_tokens = token_rows(session, rows[0].username)
        done = request.query_params.get("done")
        values = {"user": rows[0], "error": error, "mailboxes": boxes, "tokens": api_tokens,
                  "done": done if done in DONE and error is None else None,
                  "global_roles": list(GlobalRole), "member_roles": list(MemberRole)}
        return renderer.page(request, "users/detail.html", values, staff=admin,
                             status=status)

    @router.get(BASE + "/{user_id}")
    async def user_detail(request: Request, admin: AdminUser, user_id: str) -> Response:
        return await run_in_threadpool(user_page, request, admin, parse_id(user_id))

    def change(request: Request, admin: Staff, user_id: int,
               apply: Callable[[Session, StaffUser], str]) -> Response:
        """Run one change in one transaction; a redirect with its notice, or the page with
        the refusal and nothing stored."""
        try:
            with session_scope(sessions) as session:
                done = apply(session, _user(session, user_id))
        except (GatewayError, Refused) as exc:
            return user_page(request, admin, user_id, error=refusal_text(request, exc),
                             status=409)
        return RedirectResponse(f"{BASE}/{user_id}?done={done}", status_code=303)

    def post(path: str, make: Callable[[Staff, FormData], Callable[[Session, StaffUser], str]],
             ) -> None:
        async def endpoint(request: Request, admin: AdminUser, user_id: str) -> Response:
            uid = parse_id(user_id)
            apply = make(admin, await request.form())
            return await run_in_threadpool(change, request, admin, uid, apply)
        router.add_api_route(BASE + "/{user_id}" + path, endpoint, methods=["POST"])

    def set_disabled(disabled: bool) -> Callable[[Staff, FormData],
                                                 Callable[[Session, StaffUser], str]]:
        def make(admin: Staff, _form: FormData) -> Callable[[Session, StaffUser], str]:
            def apply(session: Session, user: StaffUser) -> str:
                changed = actions.set_disabled(session, user.username, disabled,
                                               actor=admin.username)
                return ("disabled" if disabled else "enabled") if changed else "unchanged"
            return apply
        return make

    post("/disable", set_disabled(True))
    post("/enable", set_disabled(False))

    def reset_second_factor(admin: Staff,
                            _form: FormData) -> Callable[[Session, StaffUser], str]:
        def apply(session: Session, user: StaffUser) -> str:
            actions.reset_second_factor(session, user.username, actor=admin.username)
            return "second_factor"
        return apply

    post("/second-factor-reset", reset_second_factor)

    def change_role(admin: Staff, form: FormData) -> Callable[[Session, StaffUser], str]:
        role_text, revoke = _field(form, "role"), _field(form, "action") == "revoke"

        def apply(session: Session, user: StaffUser) -> str:
            role = _global_role(role_text)
            if revoke:
                changed = roles.revoke(session, user.username, role, actor=admin.username)
            else:
                changed = roles.grant(session, user.username, role, actor=admin.username)
            return ("role_revoked" if revoke else "role_granted") if changed else "unchanged"
        return apply

    post("/roles", change_role)

    def change_membership(admin: Staff,
                          form: FormData) -> Callable[[Session, StaffUser], str]:
        box, role_text = _field(form, "mailbox"), _field(form, "role")
        remove = _field(form, "action") == "remove"

        def apply(session: Session, user: StaffUser) -> str:
            mailbox = _mailbox(session, box)
            if remove:
                changed = members.remove_member(session, mailbox.address, user.username,
                                                actor=admin.username)
                return "member_removed" if changed else "unchanged"
            changed = members.add_member(session, mailbox.address, user.username,
                                         _member_role(role_text), actor=admin.username,
                                         now=clock())
            return "member_added" if changed else "unchanged"
        return apply

    post("/mailboxes", change_membership)

    def change_address(admin: Staff, form: FormData) -> Callable[[Session, StaffUser], str]:
        address, remove = _field(form, "address"), _field(form, "action") == "remove"

        def apply(session: Session, user: StaffUser) -> str:
            if remove:
                changed = actions.remove_address(session, user.username, address,
                                                 actor=admin.username)
                return "address_removed" if changed else "unchanged"
            changed = actions.grant_address(session, user.username, address,
                                            actor=admin.username)
            return "address_added" if changed else "unchanged"
        return apply

    post("/addresses", change_address)

    def revoke_token(admin: Staff, form: FormData) -> Callable[[Session, StaffUser], str]:
        token_text = _field(form, "token")

        def apply(session: Session, user: StaffUser) -> str:
            if not (token_text.isascii() and token_text.isdigit() and len(token_text) < 16):
                raise tokens.UnknownToken(f"no token {token_text!r}")
            changed = tokens.revoke(session, user.username, int(token_text),
                                    actor=admin.username, now=clock())
            return "token_revoked" if changed else "unchanged"
        return apply

    post("/tokens/revoke", revoke_token)

    @router.post(BASE + "/{user_id}/tokens")
    async def new_token(request: Request, admin: AdminUser, user_id: str) -> Response:
        uid = parse_id(user_id)
        name = _field(await request.form(), "name")

        def work() -> Response:
            try:
                with session_scope(sessions) as session:
                    username = _user(session, uid).username
                    _row, token = tokens.create(session, username, name, actor=admin.username,
                                                now=clock())
            except GatewayError as exc:
                return user_page(request, admin, uid, error=refusal_text(request, exc),
                                 status=409)
            response = renderer.page(request, "users/token.html", {
                "username": username, "user_id": uid, "name": name, "token": token},
                staff=admin)
            response.headers["Cache-Control"] = "no-store"
            return response

        return await run_in_threadpool(work)

    @router.post(BASE + "/{user_id}/password")
    async def new_password(request: Request, admin: AdminUser, user_id: str) -> Response:
        uid = parse_id(user_id)

        def work() -> Response:
            password = staff.generate_password()
            try:
                with session_scope(sessions) as session:
                    user = _user(session, uid)
                    username = user.username
                    actions.change_password(session, username, password, actor=admin.username)
            except GatewayError as exc:
                return user_page(request, admin, uid, error=refusal_text(request, exc),
                                 status=409)
            return once(request, admin, {"username": username, "user_id": uid,
                                         "password": password, "new": False})

        return await run_in_threadpool(work)

    # Every staff user's own password: here, beside the admin's reset, one page of the same rules.
    router.include_router(own_password_router(auth, sessions, renderer))
    return router
