"""The lead's service-level pages over HTTP (real SQLite and PostgreSQL, the app's clock
mocked): the settings form with its refusals, the findings page with an escalation linking its
ticket, the marks in the ticket list and the deadlines on the ticket page. Rights: leads only
(an agent of the mailbox gets 403, another team's ids and an admin of no mailbox 404, nothing
changed), no login redirects, a form without its CSRF token is 403."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry
from gateway.services import Services
from gateway.staff.users import add_address
from mailboxes.scheduler.runner import Scheduler
from mailboxes.service_levels import jobs as service_level_jobs
from mailboxes.service_levels.business_hours import OFFICE_TIME
from mailboxes.service_levels.models import MailboxServiceLevel
from mailboxes.tickets.models import TicketState
from mailboxes.tickets.records import change_state, get_ticket
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

VALID = {"hours_mon": "08:00-12:00, 13:00-16:00", "hours_tue": "08:00-16:00",
         "hours_wed": "08:00-16:00", "hours_thu": "08:00-16:00", "hours_fri": "08:00-12:00",
         "hours_sat": "", "hours_sun": "", "land": "NW", "closing_days": "",
         "first_response_hours": "4", "resolution_hours": "16", "warning_hours": "1",
         "untouched_days": "14", "escalation_contacts": "", "case_reference_patterns": ""}
# Every route of the service-level pages: method, path, form fields.
ROUTES = [
    ("GET", "/mailboxes/{mailbox_id}/service-levels", None),
    ("POST", "/mailboxes/{mailbox_id}/service-levels", VALID),
    ("GET", "/mailboxes/{mailbox_id}/findings", None),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ROUTES]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=OFFICE_TIME).astimezone(UTC)


@pytest.fixture
def teams(services: Services, clock: FakeClock) -> Services:
    clock.now = local("2026-11-23 09:00")   # a Monday
    two_teams(services)
    with session_scope(services.sessions) as s:
        add_address(s, "lena", "lena@jugendamt.example")
    deliver(services, mail("Kita", msgid="a1"))
    deliver(services, mail("Adoption", to=OTHER_BOX, msgid="b1"), to=OTHER_BOX)
    return services


@pytest.fixture
def client(teams: Services, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(teams.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def login(client: TestClient, services: Services, clock: FakeClock, user: str) -> str:
    return web_login(client, user, PASSWORD, enrol(services.settings, user), at=clock())


def _url(path: str, ids: TicketIds) -> str:
    return path.format(mailbox_id=ids.mailbox_id)


def _send(client: TestClient, method: str, url: str, fields: dict[str, str] | None,
          csrf: str | None) -> int:
    if method == "GET":
        return int(client.get(url, follow_redirects=False).status_code)
    data = dict(fields or {})
    if csrf is not None:
        data["csrf_token"] = csrf
    return int(client.post(url, data=data, follow_redirects=False).status_code)


def _footprint(services: Services) -> tuple[int, int]:
    with read_scope(services.sessions) as s:
        return (int(s.scalar(select(func.count()).select_from(MailboxServiceLevel)) or 0),
                int(s.scalar(select(func.count()).select_from(AuditEntry).where(
                    AuditEntry.action == "service-levels-changed")) or 0))


def test_the_list_names_every_route_of_the_pages(teams: Services) -> None:
    from tests.test_web_ticket_rights import _api_routes

    app = create_app(teams.settings)
    served = {(method, route.path) for route in _api_routes(app.routes)
              if route.path.startswith("/mailboxes/{mailbox_id}/")
              for method in route.methods or ()}
    assert served == {(method, path) for method, path, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "fields"), ROUTES, ids=ROUTE_IDS)
def test_rights_on_every_route(client: TestClient, teams: Services, clock: FakeClock,
                               method: str, path: str, fields: dict[str, str] | None) -> None:
    mine, theirs = latest_ticket(teams, BOX), latest_ticket(teams, OTHER_BOX)
    # No login: to the login page, nothing changed.
    before = _footprint(teams)
    response = client.request(method, _url(path, mine), data=fields, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert _footprint(teams) == before
    # The lead: their own mailbox works, another team's is 404, a form without CSRF 403.
    csrf = login(client, teams, clock, "lena")
    if method == "POST":
        assert _send(client, method, _url(path, mine), fields, None) == 403
        assert _send(client, method, _url(path, mine), fields, "falsch") == 403
        assert _footprint(teams) == before
    assert _send(client, method, _url(path, mine), fields, csrf) in (200, 303)
    before = _footprint(teams)
    assert _send(client, method, _url(path, theirs), fields, csrf) == 404
    assert _footprint(teams) == before
    # An agent of the mailbox: 403 (the settings are the lead's), nothing changed.
    client.cookies.clear()
    csrf = login(client, teams, clock, "anna")
    assert _send(client, method, _url(path, mine), fields, csrf) == 403
    assert _send(client, method, _url(path, theirs), fields, csrf) == 404
    # An admin of no mailbox: 404.
    client.cookies.clear()
    csrf = login(client, teams, clock, "root")
    assert _send(client, method, _url(path, mine), fields, csrf) == 404
    assert _footprint(teams) == before


def test_the_lead_sets_the_service_levels_and_a_refusal_says_why(
        client: TestClient, teams: Services, clock: FakeClock) -> None:
    box = latest_ticket(teams, BOX).mailbox_id
    login(client, teams, clock, "lena")
    page = client.get(f"/mailboxes/{box}/service-levels")
    assert page.status_code == 200 and 'id="not-configured"' in page.text
    csrf = form_csrf(page.text)
    refused = client.post(f"/mailboxes/{box}/service-levels",
                          data={**VALID, "hours_mon": "08:00-12:00, 11:00-14:00",
                                "csrf_token": csrf})
    assert refused.status_code == 409
    assert "Montag: Die Öffnungszeiten überschneiden sich." in refused.text
    assert 'value="08:00-12:00, 11:00-14:00"' in refused.text   # what was typed stays
    zero = client.post(f"/mailboxes/{box}/service-levels",
                       data={**VALID, "first_response_hours": "0", "csrf_token": csrf})
    assert zero.status_code == 409
    assert "Erste Antwort: Der Wert muss größer als null sein." in zero.text
    client.cookies.set("xgate_lang", "en")
    land = client.post(f"/mailboxes/{box}/service-levels",
                       data={**VALID, "land": "XX", "csrf_token": csrf})
    assert land.status_code == 409 and "There is no Land &#39;XX&#39;." in land.text
    assert _footprint(teams)[0] == 0
    saved = client.post(f"/mailboxes/{box}/service-levels",
                        data={**VALID, "land": "NI", "csrf_token": csrf},
                        follow_redirects=False)
    assert saved.status_code == 303
    page = client.get(saved.headers["location"])
    assert 'id="saved"' in page.text and '<option value="NI" selected>' in page.text
    with read_scope(teams.sessions) as s:
        row = s.get(MailboxServiceLevel, box)
        assert row is not None and row.land == "NI" and row.updated_by == "user:lena"
        assert row.first_response_minutes == 240


def test_an_escalation_is_shown_to_the_lead_with_marks_and_deadlines(
        client: TestClient, teams: Services, clock: FakeClock) -> None:
    ids = latest_ticket(teams, BOX)
    secret = enrol(teams.settings, "lena")
    csrf = web_login(client, "lena", PASSWORD, secret, at=clock())
    assert client.post(f"/mailboxes/{ids.mailbox_id}/service-levels",
                       data={**VALID, "csrf_token": csrf},
                       follow_redirects=False).status_code == 303
    scheduler = Scheduler(teams.settings, teams.sessions, teams.master_key, clock,
                          owner="w1", jobs=service_level_jobs.JOBS)
    clock.now = local("2026-11-23 13:30")
    scheduler.tick()
    # Hours later: the session has timed out; the lead logs in again.
    client.cookies.clear()
    web_login(client, "lena", PASSWORD, secret, at=clock())
    listing = client.get(f"/mailboxes/{ids.mailbox_id}").text
    assert "mark-sla-nearing" in listing and "Frist bald fällig" in listing
    clock.now = local("2026-11-23 14:30")
    scheduler.tick()
    client.cookies.clear()
    web_login(client, "lena", PASSWORD, secret, at=clock())
    listing = client.get(f"/mailboxes/{ids.mailbox_id}").text
    assert "mark-sla-breached" in listing
    findings = client.get(f"/mailboxes/{ids.mailbox_id}/findings")
    assert findings.status_code == 200
    assert f'<a href="/tickets/{ids.ticket_id}">' in findings.text
    assert "Erste Antwort" in findings.text and "23.11.2026 14:00" in findings.text
    assert "lena" in findings.text
    ticket = client.get(f"/tickets/{ids.ticket_id}").text
    assert 'id="sla-first_response">23.11.2026 14:00' in ticket
    assert 'id="sla-mark"' in ticket
    # Waiting on the citizen: the clock stops, and the page says so.
    with session_scope(teams.sessions) as s:
        change_state(s, get_ticket(s, ids.ticket_id), TicketState.WAITING, actor="lena",
                     now=clock())
    clock.now = local("2026-11-23 14:40")
    scheduler.tick()
    ticket = client.get(f"/tickets/{ids.ticket_id}").text
    assert 'id="sla-paused"' in ticket and "23.11.2026 14:30" in ticket
