"""Self-service recovery of a pickup code ([portal] self_service_codes), over HTTP against the
portal app on SQLite and PostgreSQL: a new code goes by SMS to the hotline number on the
ticket, never more than once per interval; the page says the same whatever happened, so it
tells nothing about a link; offices that do not allow it show no form and answer 404."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.portal.app import create_portal_app
from gateway.portal.pickup.items import create_item
from gateway.portal.pickup.sender import RecordingCodeSender
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.hotline.calls import CallForm, log_call
from mailboxes.tickets.records import create_ticket
from tests.test_portal_pickup import CITIZEN, START, reply_message

BOX = "kita@jugendamt.example"
NUMBER = "0171 2345678"
SAME_ANSWER = "Neuer Code angefordert"


@dataclass
class Portal:
    client: TestClient
    sender: RecordingCodeSender
    token: str
    old_code: str


def _item(services: Services, *, number: str | None) -> tuple[str, str]:
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kita")
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=CITIZEN,
                               subject="Antrag", actor="anna", now=START)
        if number is not None:
            log_call(s, services.master_key, box, CallForm(
                caller="Frau Beispiel", role="parent", number=number), actor="anna",
                now=START, attach_to=tid)
        item = create_item(s, services.master_key, ticket_id=tid, recipient=CITIZEN,
                           message=reply_message(), actor="anna", now=START,
                           valid_for=timedelta(days=7))
    return item.token, item.code


def _portal(services: Services, clock: FakeClock, *, allowed: bool = True,
            number: str | None = NUMBER) -> Iterator[Portal]:
    clock.now = START
    services.settings.portal.self_service_codes = allowed
    token, code = _item(services, number=number)
    sender = RecordingCodeSender()
    with TestClient(create_portal_app(services.settings, clock=clock,
                                      code_sender=sender)) as client:
        yield Portal(client, sender, token, code)


@pytest.fixture
def portal(services: Services, clock: FakeClock) -> Iterator[Portal]:
    yield from _portal(services, clock)


def _form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _ask(portal: Portal, token: str | None = None) -> httpx.Response:
    token = token or portal.token
    page = portal.client.get(f"/p/{token}")
    assert f'action="/p/{token}/new-code"' in page.text
    return portal.client.post(f"/p/{token}/new-code",
                              data={"form_token": _form_token(page.text)})


def _open(portal: Portal, code: str) -> httpx.Response:
    page = portal.client.get(f"/p/{portal.token}")
    return portal.client.post(f"/p/{portal.token}",
                              data={"code": code, "form_token": _form_token(page.text)})


def _sent_code(portal: Portal) -> str:
    [(number, text)] = portal.sender.sent
    assert number == NUMBER
    found = re.search(r"Abholcode lautet (\S+)\.", text)
    assert found is not None
    return found.group(1)


def test_a_new_code_goes_to_the_number_on_the_ticket_and_replaces_the_old(
        portal: Portal, clock: FakeClock) -> None:
    clock.now = START + timedelta(hours=2)
    answer = _ask(portal)
    assert answer.status_code == 200 and SAME_ANSWER in answer.text
    code = _sent_code(portal)
    assert _open(portal, portal.old_code).status_code == 400
    assert "Ihre Nachricht" in _open(portal, code).text


def test_at_most_one_new_code_per_interval(portal: Portal, clock: FakeClock) -> None:
    # The first code was issued at START: within the hour nothing goes out.
    clock.now = START + timedelta(minutes=30)
    assert SAME_ANSWER in _ask(portal).text
    assert portal.sender.sent == []
    clock.now = START + timedelta(minutes=61)
    _ask(portal)
    clock.now = START + timedelta(minutes=90)
    assert SAME_ANSWER in _ask(portal).text
    assert len(portal.sender.sent) == 1


def test_an_unknown_link_gets_the_same_answer_and_nothing_is_sent(
        portal: Portal, clock: FakeClock) -> None:
    clock.now = START + timedelta(hours=2)
    answer = _ask(portal, token="x" * 43)
    assert answer.status_code == 200 and SAME_ANSWER in answer.text
    assert portal.sender.sent == []


def test_no_number_on_the_ticket_gets_the_same_answer_and_nothing_is_sent(
        services: Services, clock: FakeClock) -> None:
    for portal in _portal(services, clock, number=None):
        clock.now = START + timedelta(hours=2)
        assert SAME_ANSWER in _ask(portal).text
        assert portal.sender.sent == []


def test_a_locked_item_opens_again_with_the_new_code(portal: Portal, clock: FakeClock) -> None:
    for _ in range(5):
        _open(portal, "WRONG-123")
    assert _open(portal, portal.old_code).status_code == 403  # locked
    clock.now = START + timedelta(hours=2)
    _ask(portal)
    assert "Ihre Nachricht" in _open(portal, _sent_code(portal)).text


def test_the_form_needs_its_token(portal: Portal, clock: FakeClock) -> None:
    clock.now = START + timedelta(hours=2)
    answer = portal.client.post(f"/p/{portal.token}/new-code", data={"form_token": "forged"})
    assert answer.status_code == 400 and portal.sender.sent == []


def test_offices_that_do_not_allow_it_show_no_form(services: Services,
                                                     clock: FakeClock) -> None:
    for portal in _portal(services, clock, allowed=False):
        page = portal.client.get(f"/p/{portal.token}")
        assert "/new-code" not in page.text
        assert portal.client.post(f"/p/{portal.token}/new-code",
                                  data={"form_token": _form_token(page.text)}
                                  ).status_code == 404
        assert portal.sender.sent == []
