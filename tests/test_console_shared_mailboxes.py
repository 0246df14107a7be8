"""Shared mailboxes in the console (/console/users/mailboxes) over HTTP, on SQLite and
PostgreSQL: the list with member and message counts, creating one and changing its name and
sensitive mark (each audited with the acting admin, as ``xgate mailbox add|set``), bad input
named on the page with nothing stored, admins only (403 for the auditor, the DPO and a
caseworker), an unknown mailbox id 404, and the CSRF token required."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.audit import AuditAction
from gateway.audit.view import all_entries
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.services import Services
from mailboxes.directory import add_mailbox, find_mailbox
from mailboxes.members import add_member
from mailboxes.models import Mailbox, MemberRole
from tests.support.console_web import add_console_staff, console_login
from tests.support.staff_web import BASE_URL

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PAGE = "/console/users/mailboxes"
ASD = "asd@jugendamt.example"


@pytest.fixture
def secrets(services: Services) -> dict[str, str]:
    return add_console_staff(services)


@pytest.fixture
def asd_id(services: Services, clock: FakeClock, secrets: dict[str, str]) -> int:
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, ASD, "Allgemeiner Sozialer Dienst")
        for user in ("anna", "ada"):
            add_member(s, ASD, user, MemberRole.AGENT, actor="test", now=clock())
        return box.id


@pytest.fixture
def client(services: Services, clock: FakeClock, secrets: dict[str, str],
           asd_id: int) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        c.headers["x-csrf"] = console_login(c, secrets, clock, "root")
        yield c


def post(client: TestClient, url: str, data: dict[str, str]) -> httpx.Response:
    answer: httpx.Response = client.post(
        url, data={**data, "csrf_token": client.headers["x-csrf"]}, follow_redirects=False)
    return answer


def mailbox_changes(services: Services) -> list[tuple[str, str, dict[str, object]]]:
    with read_scope(services.sessions) as s:
        return [(e.action, e.actor, dict(e.details)) for e in all_entries(s)
                if e.action in (AuditAction.MAILBOX_ADDED, AuditAction.MAILBOX_CHANGED)]


def mailbox_count(services: Services) -> int:
    with read_scope(services.sessions) as s:
        return s.scalar(select(func.count()).select_from(Mailbox)) or 0


def test_the_users_page_links_to_the_list_with_member_counts(client: TestClient,
                                                             asd_id: int) -> None:
    assert f'href="{PAGE}"' in client.get("/console/users").text
    page = client.get(PAGE)
    assert page.status_code == 200 and "Sammelpostfächer" in page.text
    row = page.text.split(f'id="mailbox-{asd_id}"')[1].split("</tr>")[0]
    assert ASD in row and "Allgemeiner Sozialer Dienst" in row
    assert '<td class="members">2</td>' in row and '<td class="messages">0</td>' in row


def test_an_admin_creates_a_sensitive_mailbox_audited(client: TestClient,
                                                      services: Services) -> None:
    answer = post(client, PAGE, {"address": " Pflege@Jugendamt.example ",
                                 "name": "Kindertagespflege", "sensitive": "1"})
    assert answer.status_code == 303 and answer.headers["location"] == f"{PAGE}?done=created"
    page = client.get(answer.headers["location"])
    assert "Das Sammelpostfach wurde angelegt." in page.text
    assert "pflege@jugendamt.example" in page.text
    with read_scope(services.sessions) as s:
        box = find_mailbox(s, "pflege@jugendamt.example")
        assert box is not None and box.sensitive and box.name == "Kindertagespflege"
    assert mailbox_changes(services) == [(AuditAction.MAILBOX_ADDED, "root", {
        "mailbox": "pflege@jugendamt.example", "name": "Kindertagespflege",
        "sensitive": True})]


@pytest.mark.parametrize(("form", "status", "said"), [
    ({"address": ASD.upper(), "name": "Doppelt"}, 409, "gibt es bereits"),
    ({"address": "kein-postfach", "name": "Ohne Domain"}, 400, "keine gültige E-Mail-Adresse"),
    ({"address": "neu@jugendamt.example", "name": "   "}, 400, "1 bis 255 Zeichen"),
    ({"address": "neu@jugendamt.example", "name": "x" * 256}, 400, "1 bis 255 Zeichen"),
])
def test_bad_input_is_named_on_the_page_and_nothing_stored(
        client: TestClient, services: Services, form: dict[str, str], status: int,
        said: str) -> None:
    answer = post(client, PAGE, form)
    assert answer.status_code == status
    assert 'id="form-error"' in answer.text and said in answer.text
    assert "Traceback" not in answer.text
    # What was typed is kept in the form.
    assert f'value="{form["address"]}"' in answer.text
    assert mailbox_count(services) == 1 and mailbox_changes(services) == []


def test_an_admin_renames_and_marks_a_mailbox_audited(client: TestClient, services: Services,
                                                      asd_id: int) -> None:
    url = f"{PAGE}/{asd_id}"
    page = client.get(url)
    assert page.status_code == 200 and 'value="Allgemeiner Sozialer Dienst"' in page.text
    answer = post(client, url, {"name": "ASD Nord", "sensitive": "1"})
    assert answer.status_code == 303 and answer.headers["location"] == f"{url}?done=changed"
    assert "Die Änderung wurde gespeichert." in client.get(answer.headers["location"]).text
    # The same again: nothing changed, nothing recorded.
    again = post(client, url, {"name": "ASD Nord", "sensitive": "1"})
    assert again.headers["location"] == f"{url}?done=unchanged"
    # An unticked box is "not sensitive".
    post(client, url, {"name": "ASD Nord"})
    with read_scope(services.sessions) as s:
        box = s.get(Mailbox, asd_id)
        assert box is not None and box.name == "ASD Nord" and not box.sensitive
    assert mailbox_changes(services) == [
        (AuditAction.MAILBOX_CHANGED, "root", {
            "mailbox": ASD, "name": {"from": "Allgemeiner Sozialer Dienst", "to": "ASD Nord"},
            "sensitive": {"from": False, "to": True}}),
        (AuditAction.MAILBOX_CHANGED, "root", {
            "mailbox": ASD, "sensitive": {"from": True, "to": False}}),
    ]


def test_an_empty_name_is_refused_and_nothing_stored(client: TestClient, services: Services,
                                                     asd_id: int) -> None:
    answer = post(client, f"{PAGE}/{asd_id}", {"name": " ", "sensitive": "1"})
    assert answer.status_code == 400 and "1 bis 255 Zeichen" in answer.text
    with read_scope(services.sessions) as s:
        box = s.get(Mailbox, asd_id)
        assert box is not None and box.name == "Allgemeiner Sozialer Dienst"
        assert not box.sensitive
    assert mailbox_changes(services) == []


@pytest.mark.parametrize("mailbox_id", ["987654321", "0x1", "abc", "9" * 20])
def test_an_unknown_mailbox_id_is_404(client: TestClient, services: Services,
                                      mailbox_id: str) -> None:
    assert client.get(f"{PAGE}/{mailbox_id}").status_code == 404
    assert post(client, f"{PAGE}/{mailbox_id}", {"name": "X"}).status_code == 404
    assert mailbox_changes(services) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("user", ["dora", "dpo", "anna"])
def test_only_admins_reach_the_shared_mailboxes(client: TestClient, services: Services,
                                                secrets: dict[str, str], clock: FakeClock,
                                                asd_id: int, user: str) -> None:
    token = console_login(client, secrets, clock, user)
    for url in (PAGE, f"{PAGE}/{asd_id}"):
        assert client.get(url).status_code == 403
        answer = client.post(url, data={"address": "x@y.example", "name": "X",
                                        "csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403
    assert mailbox_count(services) == 1 and mailbox_changes(services) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_change_without_the_csrf_token_is_refused(client: TestClient, services: Services,
                                                    asd_id: int) -> None:
    for url in (PAGE, f"{PAGE}/{asd_id}"):
        answer = client.post(url, data={"address": "x@y.example", "name": "X"},
                             follow_redirects=False)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert mailbox_count(services) == 1 and mailbox_changes(services) == []


def _outreach(services: Services) -> tuple[bool, str | None, str | None]:
    with read_scope(services.sessions) as s:
        box = find_mailbox(s, ASD)
        assert box is not None
        return box.receipt_enabled, box.receipt_template, box.signature


def test_an_admin_sets_the_receipt_and_the_signature_audited(
        client: TestClient, services: Services, asd_id: int) -> None:
    """As ``xgate mailbox set --no-receipt --receipt-text --signature``: one library call."""
    assert 'id="change-outreach"' in client.get(f"{PAGE}/{asd_id}").text
    answer = post(client, f"{PAGE}/{asd_id}/outreach", {
        "receipt_template": "Ihr Anliegen hat die Nummer {ticket}.",
        "signature": "Mit freundlichen Grüßen\r\nIhr ASD"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=changed")
    assert _outreach(services) == (False, "Ihr Anliegen hat die Nummer {ticket}.",
                                   "Mit freundlichen Grüßen\nIhr ASD")
    [(action, actor, details)] = mailbox_changes(services)
    assert (action, actor) == (AuditAction.MAILBOX_CHANGED, "root")
    assert set(details) >= {"receipt", "receipt_template", "signature"}
    page = client.get(f"{PAGE}/{asd_id}").text
    assert "Ihr Anliegen hat die Nummer {ticket}." in page
    # Empty fields: the default text again and no signature.
    post(client, f"{PAGE}/{asd_id}/outreach", {"receipt": "1", "receipt_template": "",
                                               "signature": ""})
    assert _outreach(services) == (True, None, None)


def test_a_receipt_text_without_the_ticket_number_is_refused(
        client: TestClient, services: Services, asd_id: int) -> None:
    before = _outreach(services)
    answer = post(client, f"{PAGE}/{asd_id}/outreach", {
        "receipt": "1", "receipt_template": "Danke für Ihre Nachricht.", "signature": "x"})
    assert answer.status_code == 409 and "{ticket}" in answer.text
    assert "Danke für Ihre Nachricht." in answer.text  # what was typed stays
    assert _outreach(services) == before and mailbox_changes(services) == []


def test_the_receipt_form_is_for_admins_only_and_needs_its_token(
        client: TestClient, services: Services, secrets: dict[str, str], clock: FakeClock,
        asd_id: int) -> None:
    before = _outreach(services)
    assert client.post(f"{PAGE}/{asd_id}/outreach", data={"signature": "x"}).status_code == 403
    assert post(client, f"{PAGE}/999999/outreach", {"signature": "x"}).status_code == 404
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as other:
        token = console_login(other, secrets, clock, "dora")  # the auditor
        assert other.post(f"{PAGE}/{asd_id}/outreach",
                          data={"signature": "x", "csrf_token": token}).status_code == 403
    assert _outreach(services) == before
