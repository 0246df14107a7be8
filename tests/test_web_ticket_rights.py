"""Who may reach which mailbox and ticket page: every route with an id, tried with another
team's ids, answers 404 and changes nothing (IDOR); without a login a page redirects to the
login; a form without its CSRF token is refused (403). Real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.routing import BaseRoute

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope
from gateway.models import AuditEntry, Message
from gateway.services import Services
from mailboxes.tickets.models import Article, HistoryEntry
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login
from tests.support.ticket_web import (
    BOX,
    OTHER_BOX,
    PASSWORD,
    TicketIds,
    deliver,
    latest_ticket,
    mail,
    two_teams,
)

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")

# Every route of the mailbox and ticket pages: method, path, form fields.
ROUTES = [
    ("GET", "/mailboxes/{mailbox_id}", None),
    ("GET", "/tickets/{ticket_id}", None),
    ("GET", "/tickets/{ticket_id}/articles/{article_id}/attachments/{index}", None),
    ("POST", "/tickets/{ticket_id}/notes", {"text": "eingeschleust"}),
    ("POST", "/tickets/{ticket_id}/assign", {"assignee": "me"}),
    ("POST", "/tickets/{ticket_id}/state", {"state": "closed"}),
    ("POST", "/tickets/{ticket_id}/reply", {"text": "eingeschleust"}),
    # The hotline's forms on the ticket page (admin_ui.pages.hotline.ticket_forms).
    ("POST", "/tickets/{ticket_id}/follow-up", {"due_on": "2099-01-01"}),
    ("POST", "/tickets/{ticket_id}/link", {"other": "XG-2000-000001"}),
    ("POST", "/tickets/{ticket_id}/merge", {"into": "XG-2000-000001"}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ROUTES]


@pytest.fixture
def teams(services: Services) -> Services:
    two_teams(services)
    deliver(services, mail("Kita", msgid="a1", attachment=b"%PDF-a"))
    deliver(services, mail("Adoption", to=OTHER_BOX, msgid="b1", attachment=b"%PDF-b"),
            to=OTHER_BOX)
    return services


@pytest.fixture
def client(teams: Services, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(teams.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def _url(path: str, ids: TicketIds, index: int = 0) -> str:
    return path.format(mailbox_id=ids.mailbox_id, ticket_id=ids.ticket_id,
                       article_id=ids.article_id, index=index)


def _send(client: TestClient, method: str, url: str, fields: dict[str, str] | None,
          csrf: str | None) -> int:
    if method == "GET":
        return client.get(url, follow_redirects=False).status_code
    data = dict(fields or {})
    if csrf is not None:
        data["csrf_token"] = csrf
    files = ([("attachments", ("a.txt", b"x", "text/plain"))]
             if url.endswith("/reply") else None)
    return client.post(url, data=data, files=files, follow_redirects=False).status_code


def _footprint(services: Services) -> tuple[int, ...]:
    with read_scope(services.sessions) as s:
        return tuple(int(s.scalar(select(func.count()).select_from(model)) or 0)
                     for model in (Article, HistoryEntry, Message))


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    # FastAPI keeps included routers as they are (their routes are found on the way in).
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_the_list_names_every_route_of_the_pages(teams: Services) -> None:
    app = create_app(teams.settings)
    served = {(method, route.path) for route in _api_routes(app.routes)
              if route.path.startswith(("/mailboxes", "/tickets"))
              # A mailbox's service-level pages (leads only): tests/test_web_service_levels.py.
              and not route.path.startswith("/mailboxes/{mailbox_id}/")
              for method in route.methods}
    assert served == {(method, path) for method, path, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "fields"), ROUTES, ids=ROUTE_IDS)
def test_another_teams_ids_are_404_and_change_nothing(
        client: TestClient, teams: Services, clock: FakeClock, method: str, path: str,
        fields: dict[str, str] | None) -> None:
    csrf = web_login(client, "anna", PASSWORD, enrol(teams.settings, "anna"), at=clock())
    mine, theirs = latest_ticket(teams, BOX), latest_ticket(teams, OTHER_BOX)
    # The same route with anna's own ids works: the 404 below is about the ids.
    # (Linking to a number that does not exist is refused by the domain, 409: the ids
    # passed the rights check, which is what this shows.)
    assert _send(client, "GET" if method == "GET" else method, _url(path, mine), fields,
                 csrf) in ((200, 303, 409) if path.endswith(("/link", "/merge"))
                           else (200, 303))
    before = _footprint(teams)
    with read_scope(teams.sessions) as s:
        reads = s.scalar(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.action == "ticket-content-read"))
    assert _send(client, method, _url(path, theirs), fields, csrf) == 404
    # Mixed: anna's ticket with the other team's article.
    if "{article_id}" in path:
        mixed = TicketIds(mine.mailbox_id, mine.ticket_id, theirs.article_id)
        assert _send(client, method, _url(path, mixed), fields, csrf) == 404
    assert _footprint(teams) == before
    with read_scope(teams.sessions) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "ticket-content-read")) == reads


@pytest.mark.parametrize(("method", "path", "fields"), ROUTES, ids=ROUTE_IDS)
def test_without_a_login_pages_redirect_to_it(client: TestClient, teams: Services,
                                              method: str, path: str,
                                              fields: dict[str, str] | None) -> None:
    before = _footprint(teams)
    response = client.request(method, _url(path, latest_ticket(teams, BOX)),
                              data=fields, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert _footprint(teams) == before


@pytest.mark.parametrize(("method", "path", "fields"),
                         [r for r in ROUTES if r[0] == "POST"],
                         ids=[i for i, r in zip(ROUTE_IDS, ROUTES, strict=True)
                              if r[0] == "POST"])
def test_a_form_without_its_csrf_token_is_403(client: TestClient, teams: Services,
                                              clock: FakeClock, method: str, path: str,
                                              fields: dict[str, str] | None) -> None:
    web_login(client, "anna", PASSWORD, enrol(teams.settings, "anna"), at=clock())
    before = _footprint(teams)
    url = _url(path, latest_ticket(teams, BOX))
    assert _send(client, method, url, fields, None) == 403
    assert _send(client, method, url, fields, "falsch") == 403
    assert _footprint(teams) == before


def test_a_lead_reaches_the_mailbox_and_an_admin_of_no_mailbox_does_not(
        client: TestClient, teams: Services, clock: FakeClock) -> None:
    ids = latest_ticket(teams, BOX)
    web_login(client, "lena", PASSWORD, enrol(teams.settings, "lena"), at=clock())
    assert "Sie leiten dieses Postfach." in client.get(f"/mailboxes/{ids.mailbox_id}").text
    client.cookies.clear()
    web_login(client, "root", PASSWORD, enrol(teams.settings, "root"), at=clock())
    for method, path, fields in ROUTES:
        assert _send(client, method, _url(path, ids), fields,
                     form_csrf(client.get("/").text)) == 404, path
