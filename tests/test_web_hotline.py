"""The hotline's pages over HTTP (TestClient, real SQLite and PostgreSQL, a fake clock):
logging a call (with the caller's open tickets offered), the callbacks due with attempts,
follow-ups that come back on their day, link and merge forms, the topic catalogue; refused
input answered on the page with nothing stored; and the rights: every hotline route with
another team's ids is 404 and changes nothing, without a login a redirect, without CSRF 403."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry
from gateway.services import Services
from mailboxes.directory import find_mailbox
from mailboxes.hotline.days import OFFICE_ZONE, office_day
from mailboxes.hotline.models import Call, CallbackAttempt, FollowUp, TicketLink, Topic
from mailboxes.hotline.topics import add_topic
from mailboxes.tickets.models import HistoryEntry, Ticket
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login
from tests.support.ticket_web import (
    BOX,
    OTHER_BOX,
    PASSWORD,
    deliver,
    latest_ticket,
    mail,
    two_teams,
)
from tests.test_web_ticket_rights import _api_routes

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
def teams(services: Services) -> Services:
    two_teams(services)
    with session_scope(services.sessions) as s:
        for address in (BOX, OTHER_BOX):
            mailbox = find_mailbox(s, address)
            assert mailbox is not None
            add_topic(s, mailbox, "Betreuungsvertrag", actor="t")
    deliver(services, mail("Frage zur Pflegeerlaubnis", msgid="a1"))
    deliver(services, mail("Adoption", to=OTHER_BOX, msgid="b1"), to=OTHER_BOX)
    return services


@pytest.fixture
def client(teams: Services, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(teams.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def login(client: TestClient, services: Services, clock: FakeClock, user: str) -> str:
    return web_login(client, user, PASSWORD, enrol(services.settings, user), at=clock())


def local(clock: FakeClock, hours: float) -> str:
    """A datetime-local value ``hours`` from now, on the office's clock."""
    return (clock() + timedelta(hours=hours)).astimezone(OFFICE_ZONE).strftime("%Y-%m-%dT%H:%M")


def count(services: Services, model: type) -> int:
    with read_scope(services.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


CALL = {"caller": "Petra Sonnenschein", "role": "childminder", "number": "0221 / 123 45",
        "topic": "Betreuungsvertrag", "notes": "Fragt nach Vertretung.", "case_ref": ""}


def log(client: TestClient, csrf: str, box: int, **fields: str) -> str:
    response = client.post(f"/hotline/{box}/calls", data={**CALL, **fields,
                                                          "csrf_token": csrf, "step": "log"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def test_log_a_call_then_find_it_when_the_caller_calls_again(
        client: TestClient, teams: Services, clock: FakeClock) -> None:
    csrf = login(client, teams, clock, "anna")
    box = latest_ticket(teams, BOX).mailbox_id
    page = client.get(f"/hotline/{box}/calls/new")
    assert page.status_code == 200 and "Anruf erfassen" in page.text
    assert "Betreuungsvertrag" in page.text
    where = log(client, csrf, box, callback="1", callback_by=local(clock, 2))
    ticket = client.get(where).text
    assert "Telefonvorgang" in ticket and "Petra Sonnenschein" in ticket
    assert "0221 / 123 45" in ticket and "Rückruf fällig bis" in ticket
    assert "Fragt nach Vertretung." in ticket  # the notes, as a sealed note
    listed = client.get(f"/mailboxes/{box}").text
    assert "Telefon" in listed and "Anruf: Petra Sonnenschein" in listed
    # The same caller again: the find step offers the open ticket and stores nothing.
    before = count(teams, Call)
    found = client.post(f"/hotline/{box}/calls", data={
        **CALL, "number": "0221-12345", "csrf_token": csrf, "step": "find"})
    assert found.status_code == 200 and 'name="attach_to"' in found.text
    tid = where.rsplit("/", 1)[1]
    assert f'value="{tid}"' in found.text and count(teams, Call) == before
    again = log(client, csrf, box, attach_to=tid)
    assert again == where and count(teams, Call) == before + 1
    # Another team's ticket id as attach_to is refused like an unknown one.
    other = latest_ticket(teams, OTHER_BOX).ticket_id
    refused = client.post(f"/hotline/{box}/calls", data={
        **CALL, "attach_to": str(other), "csrf_token": csrf, "step": "log"})
    assert refused.status_code == 409 and "gibt es in diesem Postfach nicht" in refused.text


@pytest.mark.parametrize(("fields", "says"), [
    ({"number": "bitte zurückrufen"}, "ist keine Telefonnummer"),
    ({"number": "12 34"}, "mindestens 5 Ziffern"),
    ({"caller": "x" * 201}, "höchstens 200 Zeichen"),
    ({"callback": "1", "callback_by": ""}, "Bis wann"),
    ({"callback": "1", "callback_by": "2020-01-01T10:00"}, "in der Vergangenheit"),
    ({"callback": "1", "callback_by": "morgen"}, "kein Datum mit Uhrzeit"),
    ({"topic": "Urlaub"}, "kein Thema dieses Postfachs"),
])
def test_bad_call_input_is_said_on_the_page_and_nothing_is_stored(
        client: TestClient, teams: Services, clock: FakeClock, fields: dict[str, str],
        says: str) -> None:
    csrf = login(client, teams, clock, "anna")
    box = latest_ticket(teams, BOX).mailbox_id
    before = (count(teams, Ticket), count(teams, Call), count(teams, AuditEntry))
    response = client.post(f"/hotline/{box}/calls",
                           data={**CALL, **fields, "csrf_token": csrf, "step": "log"})
    assert response.status_code == 409 and says in response.text
    assert "Fragt nach Vertretung." in response.text  # what was typed is kept
    assert (count(teams, Ticket), count(teams, Call), count(teams, AuditEntry)) == before


def test_callbacks_due_and_an_attempt_in_one_click(client: TestClient, teams: Services,
                                                   clock: FakeClock) -> None:
    csrf = login(client, teams, clock, "anna")
    box = latest_ticket(teams, BOX).mailbox_id
    log(client, csrf, box, caller="Spät", callback="1", callback_by=local(clock, 5))
    log(client, csrf, box, caller="Früh", number="0228 99999", callback="1",
        callback_by=local(clock, 1))
    with read_scope(teams.sessions) as s:
        reads = s.scalar(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.action == "ticket-content-read"))
    page = client.get(f"/hotline/{box}/callbacks").text
    assert page.index("Früh") < page.index("Spät")
    with read_scope(teams.sessions) as s:  # the callers' details shown: one read per call
        assert s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "ticket-content-read")) == reads + 2
    with read_scope(teams.sessions) as s:
        early = s.scalars(select(Call).order_by(Call.callback_due_at)).first()
        assert early is not None
        call_id = early.id
    response = client.post(f"/hotline/calls/{call_id}/attempts", data={
        "csrf_token": csrf, "outcome": "not_reached", "note": "besetzt"},
        follow_redirects=False)
    assert response.status_code == 303
    assert "1 Versuch(e) bisher" in client.get(f"/hotline/{box}/callbacks").text
    refused = client.post(f"/hotline/calls/{call_id}/attempts", data={
        "csrf_token": csrf, "outcome": "not_reached", "again_by": "2020-01-01T09:00"})
    assert refused.status_code == 409 and "in der Vergangenheit" in refused.text
    client.post(f"/hotline/calls/{call_id}/attempts",
                data={"csrf_token": csrf, "outcome": "reached"})
    page = client.get(f"/hotline/{box}/callbacks").text
    assert "Früh" not in page and "Spät" in page
    assert "Keine Rückrufe offen." in client.get(f"/hotline/{box}/callbacks?mine=1").text
    assert count(teams, CallbackAttempt) == 2


def test_a_follow_up_comes_back_on_its_day(client: TestClient, teams: Services,
                                           clock: FakeClock) -> None:
    secret = enrol(teams.settings, "anna")
    csrf = web_login(client, "anna", PASSWORD, secret, at=clock())
    ids = latest_ticket(teams, BOX)
    yesterday = office_day(clock()) - timedelta(days=1)
    refused = client.post(f"/tickets/{ids.ticket_id}/follow-up", data={
        "csrf_token": csrf, "due_on": yesterday.isoformat(), "note": "x"})
    assert refused.status_code == 409 and "nicht in der Vergangenheit" in refused.text
    assert count(teams, FollowUp) == 0
    day = office_day(clock()) + timedelta(days=2)
    assert client.post(f"/tickets/{ids.ticket_id}/follow-up", data={
        "csrf_token": csrf, "due_on": day.isoformat(), "note": "Erlaubnis da?"},
        follow_redirects=False).status_code == 303
    assert "Heute ist keine Wiedervorlage fällig." in client.get(
        f"/hotline/{ids.mailbox_id}/follow-ups").text
    assert "Wiedervorlage fällig" not in client.get(f"/mailboxes/{ids.mailbox_id}").text
    clock.advance(2 * 86400)
    client.cookies.clear()  # two days later: a new login
    csrf = web_login(client, "anna", PASSWORD, secret, at=clock())
    due = client.get(f"/hotline/{ids.mailbox_id}/follow-ups").text
    assert "Erlaubnis da?" in due and "Frage zur Pflegeerlaubnis" in due
    assert "Wiedervorlage fällig" in client.get(f"/mailboxes/{ids.mailbox_id}").text
    client.post(f"/tickets/{ids.ticket_id}/follow-up", data={"csrf_token": csrf, "done": "1"})
    assert count(teams, FollowUp) == 0


def test_link_and_merge_forms(client: TestClient, teams: Services, clock: FakeClock) -> None:
    csrf = login(client, teams, clock, "anna")
    box = latest_ticket(teams, BOX).mailbox_id
    mail_ticket = latest_ticket(teams, BOX).ticket_id
    phone = int(log(client, csrf, box).rsplit("/", 1)[1])
    with read_scope(teams.sessions) as s:
        numbers = {t.id: t.number for t in s.scalars(select(Ticket))}
    other = numbers[latest_ticket(teams, OTHER_BOX).ticket_id]
    refused = client.post(f"/tickets/{phone}/link", data={"csrf_token": csrf, "other": other})
    assert refused.status_code == 409 and f"Einen Vorgang {other} gibt es" in refused.text
    assert count(teams, TicketLink) == 0
    client.post(f"/tickets/{phone}/link",
                data={"csrf_token": csrf, "other": numbers[mail_ticket]})
    assert numbers[phone] in client.get(f"/tickets/{mail_ticket}").text
    client.post(f"/tickets/{mail_ticket}/merge",
                data={"csrf_token": csrf, "into": numbers[phone]})
    page = client.get(f"/tickets/{mail_ticket}").text
    assert "Als Duplikat zusammengeführt in" in page and "ticket-merged" in page
    again = client.post(f"/tickets/{mail_ticket}/merge",
                        data={"csrf_token": csrf, "into": numbers[phone]})
    assert again.status_code == 409 and "schon zusammengeführt" in again.text


def test_the_lead_edits_the_topics_an_agent_may_not(client: TestClient, teams: Services,
                                                    clock: FakeClock) -> None:
    box = latest_ticket(teams, BOX).mailbox_id
    csrf = login(client, teams, clock, "anna")
    assert client.get(f"/hotline/{box}/topics").status_code == 403
    assert client.post(f"/hotline/{box}/topics",
                       data={"csrf_token": csrf, "add": "Neu"}).status_code == 403
    client.cookies.clear()
    csrf = login(client, teams, clock, "lena")
    client.post(f"/hotline/{box}/topics", data={"csrf_token": csrf, "add": "Geldleistung"})
    assert "Geldleistung" in client.get(f"/hotline/{box}/topics").text
    refused = client.post(f"/hotline/{box}/topics", data={"csrf_token": csrf, "add": "x" * 101})
    assert refused.status_code == 409 and "höchstens 100 Zeichen" in refused.text
    client.post(f"/hotline/{box}/topics", data={"csrf_token": csrf, "remove": "Geldleistung"})
    assert "Geldleistung" not in client.get(f"/hotline/{box}/topics").text


# --- rights ----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/hotline/{mailbox_id}/calls/new", None),
    ("POST", "/hotline/{mailbox_id}/calls", {**CALL, "step": "log"}),
    ("GET", "/hotline/{mailbox_id}/callbacks", None),
    ("POST", "/hotline/calls/{call_id}/attempts", {"outcome": "reached"}),
    ("GET", "/hotline/{mailbox_id}/follow-ups", None),
    ("GET", "/hotline/{mailbox_id}/topics", None),
    ("POST", "/hotline/{mailbox_id}/topics", {"add": "Eingeschleust"}),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def _footprint(services: Services) -> tuple[int, ...]:
    return tuple(count(services, m) for m in (Ticket, Call, CallbackAttempt, Topic,
                                             HistoryEntry, AuditEntry))


def _calls(services: Services) -> dict[str, int]:
    """A call with a callback due in each mailbox."""
    from mailboxes.hotline.calls import CallForm, log_call

    found = {}
    with session_scope(services.sessions) as s:
        for address, user in ((BOX, "anna"), (OTHER_BOX, "bert")):
            mailbox = find_mailbox(s, address)
            assert mailbox is not None
            found[address] = log_call(s, services.master_key, mailbox, CallForm(
                "Jo", "parent", "0221 12345", callback_due=services.clock()
                + timedelta(hours=1)), actor=user, now=services.clock()).call_id
    return found


def test_the_list_names_every_hotline_route(teams: Services) -> None:
    app = create_app(teams.settings)
    served = {(method, route.path) for route in _api_routes(app.routes)
              if route.path.startswith("/hotline") for method in route.methods or ()}
    assert served == {(m, p) for m, p, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "fields"), ROUTES, ids=ROUTE_IDS)
def test_another_teams_ids_are_404_and_change_nothing(
        client: TestClient, teams: Services, clock: FakeClock, method: str, path: str,
        fields: dict[str, str] | None) -> None:
    box, other = latest_ticket(teams, BOX).mailbox_id, latest_ticket(teams, OTHER_BOX).mailbox_id
    calls = _calls(teams)
    csrf = login(client, teams, clock, "lena")  # a lead: the topics pages are hers
    mine = path.format(mailbox_id=box, call_id=calls[BOX])
    theirs = path.format(mailbox_id=other, call_id=calls[OTHER_BOX])
    data = {**(fields or {}), "csrf_token": csrf}
    if method == "GET":
        assert client.get(mine).status_code == 200
        assert client.get(theirs).status_code == 404
        return
    before = _footprint(teams)
    assert client.post(theirs, data=data, follow_redirects=False).status_code == 404
    assert _footprint(teams) == before
    assert client.post(mine, data=data, follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("method", "path", "fields"), ROUTES, ids=ROUTE_IDS)
def test_without_a_login_pages_redirect_to_it(client: TestClient, teams: Services,
                                              method: str, path: str,
                                              fields: dict[str, str] | None) -> None:
    box = latest_ticket(teams, BOX).mailbox_id
    calls = _calls(teams)
    before = _footprint(teams)
    url = path.format(mailbox_id=box, call_id=calls[BOX])
    response = client.request(method, url, data=fields, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert _footprint(teams) == before


@pytest.mark.parametrize(("method", "path", "fields"), [r for r in ROUTES if r[0] == "POST"])
def test_a_form_without_its_csrf_token_is_403(client: TestClient, teams: Services,
                                              clock: FakeClock, method: str, path: str,
                                              fields: dict[str, str] | None) -> None:
    box = latest_ticket(teams, BOX).mailbox_id
    calls = _calls(teams)
    login(client, teams, clock, "lena")
    before = _footprint(teams)
    url = path.format(mailbox_id=box, call_id=calls[BOX])
    assert client.post(url, data=fields, follow_redirects=False).status_code == 403
    assert client.post(url, data={**(fields or {}), "csrf_token": "falsch"},
                       follow_redirects=False).status_code == 403
    assert _footprint(teams) == before


def test_the_call_form_page_has_a_csrf_field(client: TestClient, teams: Services,
                                             clock: FakeClock) -> None:
    login(client, teams, clock, "anna")
    page = client.get(f"/hotline/{latest_ticket(teams, BOX).mailbox_id}/calls/new").text
    assert form_csrf(page)
