"""The role matrix of the admin console: EVERY route of create_app() under /console, found in
the app itself (so a route added later is covered without touching this file), asked with GET
or POST by each kind of user: an admin, an auditor, a data-protection officer, a caseworker
who is a member of a mailbox, a caseworker of no mailbox, and nobody logged in.

What each may open is admin_ui.security.rights.console_areas (the one place for rights); this
test holds the pages to it: nobody logged in is sent to the login, a role whose areas lack the
route's area is refused with 403, a role that has it is not refused (its answer for an id
that does not exist is 404, never 403, never a server error). A console route outside every
area must be named in ``OUTSIDE_AREAS`` with who may use it, else the matrix fails. A route
that changes something inside an area the auditor and the DPO only read is admin-only: it is
named in ``ADMIN_ONLY`` (decided by admin_ui.security.rights.check_admin), and the matrix
expects 403 from everyone but admins there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from admin_ui.security import rights
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, console_areas
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.services import Services
from gateway.staff import roles
from gateway.staff import users as staff
from gateway.staff.roles import GlobalRole
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.support.staff_web import BASE_URL, add_tokens, bearer, enrol, web_login

pytestmark = pytest.mark.usefixtures("cheap_hashing")
# Rights do not depend on the database; one is enough for the matrix.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PASSWORD = "ein sehr langes passwort"
# The users of the matrix: name -> global roles (the caseworkers have none).
USERS: dict[str, frozenset[GlobalRole]] = {
    "chef": frozenset({GlobalRole.ADMIN}),
    "pruef": frozenset({GlobalRole.AUDITOR}),
    "dsb": frozenset({GlobalRole.DPO}),
    "sachb": frozenset(),   # lead of a shared mailbox
    "neu": frozenset(),     # in no mailbox
}
ANONYMOUS = "anonymous"
# What the issue asks of the areas, spelled out once more: console_areas must agree.
EXPECTED_AREAS = {
    "chef": set(ConsoleArea),
    "pruef": {ConsoleArea.TRANSFERS, ConsoleArea.AUDIT},
    "dsb": {ConsoleArea.TRANSFERS, ConsoleArea.AUDIT},
    "sachb": {ConsoleArea.CONSENT},
    "neu": {ConsoleArea.CONSENT},
}
# Console routes outside the areas, with who may use them. Task pages: any staff user (the
# page itself shows a task only to whoever started it and to admins; other ids are 404).
ANY_STAFF = "any staff user"
OUTSIDE_AREAS = {"/console/tasks/{task_id}": ANY_STAFF}
# Changes inside a read area (TRANSFERS, AUDIT) that only admins may make: (method, path) ->
# the check in admin_ui.security.rights that decides it. Everyone else gets 403.
ADMIN_ONLY = {
    ("POST", "/console/audit/forget"): "check_audit_forget",
    ("POST", "/console/transfers/{queue_id}/retry"): "check_transfer_retry",
}
# An id in a URL that exists nowhere: digits and hex digits both, so every id parser takes it.
UNKNOWN_ID = "987654321"
_PARAMETER = re.compile(r"\{[^}]+\}")


def console_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the app under /console, from the app's own route table."""
    paths = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items()
                  if path == "/console" or path.startswith("/console/")
                  for method in operations)


def area_of(path: str) -> ConsoleArea | None:
    segment = path.removeprefix("/console").strip("/").split("/")[0]
    return ConsoleArea(segment) if segment in set(ConsoleArea) else None


def may_use(user: str, method: str, path: str) -> bool:
    area = area_of(path)
    if area is None:
        assert OUTSIDE_AREAS[path] == ANY_STAFF
        return True
    if (method, path) in ADMIN_ONLY:
        return GlobalRole.ADMIN in USERS[user]
    return area in console_areas(Staff(0, user, USERS[user]))


@pytest.fixture
def app(services: Services, clock: FakeClock) -> FastAPI:
    with session_scope(services.sessions) as session:
        for name, held in USERS.items():
            staff.add_user(session, name, PASSWORD, admin=GlobalRole.ADMIN in held)
            for role in held - {GlobalRole.ADMIN}:
                roles.grant(session, name, role, actor="test")
        add_mailbox(session, "asd@jugendamt.example", "ASD")
        add_member(session, "asd@jugendamt.example", "sachb", MemberRole.LEAD, actor="test",
                   now=clock())
    add_tokens(services.settings, *USERS)
    return create_app(services.settings, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # A server error is an answer like any other here: one is named in the matrix's list.
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_areas_of_each_role_are_what_the_issue_asks() -> None:
    for name, expected in EXPECTED_AREAS.items():
        assert set(console_areas(Staff(0, name, USERS[name]))) == expected, name


@sqlite_only
def test_every_console_route_is_in_the_matrix(app: FastAPI) -> None:
    routes = console_routes(app)
    # The users pages at least; the other helpers' areas join as they land.
    assert ("GET", "/console/users") in routes and len(routes) >= 9
    unplaced = [f"{m} {p}" for m, p in routes if area_of(p) is None and p not in OUTSIDE_AREAS]
    assert unplaced == [], "console routes in no area: add them to OUTSIDE_AREAS or an area"
    stale = set(OUTSIDE_AREAS) - {p for _, p in routes}
    assert not stale, f"OUTSIDE_AREAS names routes the app does not have: {stale}"
    stale_admin = set(ADMIN_ONLY) - set(routes)
    assert not stale_admin, f"ADMIN_ONLY names routes the app does not have: {stale_admin}"
    assert all(callable(getattr(rights, check, None)) for check in ADMIN_ONLY.values())


@sqlite_only
@pytest.mark.parametrize("user", [*USERS, ANONYMOUS])
def test_each_role_gets_what_console_areas_says(app: FastAPI, client: TestClient,
                                                user: str) -> None:
    wrong: list[str] = []
    for method, path in console_routes(app):
        url = _PARAMETER.sub(UNKNOWN_ID, path)
        headers = {} if user == ANONYMOUS else bearer(user)
        # An empty form: the matrix is about who is let in, not about changing anything.
        answer = client.request(method, url, headers=headers, data={},
                                follow_redirects=False)
        status = answer.status_code
        if user == ANONYMOUS:
            if status != 303 or answer.headers.get("location") != "/login":
                wrong.append(f"{method} {path}: {status}, not the login")
        elif not may_use(user, method, path):
            if status != 403:
                wrong.append(f"{method} {path}: {status}, not 403")
        elif status in (401, 403) or status >= 500 or (
                status == 303 and answer.headers.get("location", "").startswith("/login")):
            wrong.append(f"{method} {path}: {status} for a user who may use it")
        elif _PARAMETER.search(path) and method == "GET" and status != 404:
            wrong.append(f"{method} {path}: {status} for an id that does not exist")
        elif not _PARAMETER.search(path) and method == "GET" and status != 200:
            wrong.append(f"{method} {path}: {status}, not the page")
    assert wrong == [], f"{user}: " + "; ".join(wrong)


@sqlite_only
def test_every_console_post_needs_the_csrf_token_of_a_login_session(
        app: FastAPI, client: TestClient, services: Services, clock: FakeClock) -> None:
    """An admin (who may use every area, so a 403 here is the CSRF check's) logged in with
    the session cookie: each console POST without the form's token is refused."""
    web_login(client, "chef", PASSWORD, enrol(services.settings, "chef"), at=clock())
    posts = [path for method, path in console_routes(app) if method == "POST"]
    assert posts
    wrong = []
    for path in posts:
        answer = client.post(_PARAMETER.sub(UNKNOWN_ID, path), data={"reason": "x"},
                             follow_redirects=False)
        if answer.status_code != 403 or "CSRF" not in answer.text:
            wrong.append(f"POST {path}: {answer.status_code}")
    assert wrong == []


@sqlite_only
def test_the_navigation_shows_each_role_its_areas_and_only_those(client: TestClient) -> None:
    for user, expected in EXPECTED_AREAS.items():
        home = client.get("/", headers=bearer(user))
        nav = re.search(r'<nav aria-label="Hauptnavigation">(.*?)</nav>', home.text, re.S)
        assert nav, user
        shown = re.findall(r'<a href="([^"]+)"', nav.group(1))
        assert shown == ["/"] + [f"/console/{a.value}" for a in ConsoleArea
                                 if a in expected], user
