"""Pickup on the staff ticket page over HTTP (real SQLite and PostgreSQL): the ticket shows
its pickup items (opened, downloads), a member issues a new code shown once that then opens
the item; another team's item and an unknown one are 404 and change nothing, no CSRF 403."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.portal.pickup.items import Outcome, create_item, open_with_code, record_download
from gateway.portal.pickup.models import PickupItem
from gateway.services import Services
from tests.support.staff_web import BASE_URL, enrol, web_login
from tests.support.ticket_web import (
    BOX,
    OTHER_BOX,
    PASSWORD,
    deliver,
    latest_ticket,
    mail,
    two_teams,
)
from tests.test_portal_pickup import reply_message

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
def items(services: Services, clock: FakeClock) -> dict[str, tuple[int, int, str]]:
    """An item on a ticket of each team: (ticket id, item id, token)."""
    two_teams(services)
    deliver(services, mail("Kita", msgid="a1"))
    deliver(services, mail("Adoption", to=OTHER_BOX, msgid="b1"), to=OTHER_BOX)
    out = {}
    with session_scope(services.sessions) as s:
        for box in (BOX, OTHER_BOX):
            tid = latest_ticket(services, box).ticket_id
            made = create_item(s, services.master_key, ticket_id=tid,
                               recipient="tagesmutter@web.example", message=reply_message(),
                               actor="anna", now=clock())
            out[box] = (tid, made.item_id, made.token)
            if box == BOX:
                assert open_with_code(s, services.master_key, made.token, made.code,
                                      now=clock()).outcome is Outcome.OPENED
                record_download(s, services.master_key, made.item_id, 1,
                                now=clock() + timedelta(minutes=1))
    return out


@pytest.fixture
def client(services: Services, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def code_hash(services: Services, item_id: int) -> bytes | None:
    with read_scope(services.sessions) as s:
        item = s.get(PickupItem, item_id)
        assert item is not None
        return item.code_hash


def test_the_ticket_shows_pickup_and_a_new_code_opens_the_item(
        client: TestClient, services: Services, clock: FakeClock,
        items: dict[str, tuple[int, int, str]]) -> None:
    csrf = web_login(client, "anna", PASSWORD, enrol(services.settings, "anna"), at=clock())
    tid, item_id, token = items[BOX]
    page = client.get(f"/tickets/{tid}")
    assert page.status_code == 200
    assert f'id="pickup-{item_id}"' in page.text
    assert "Anhang 2 heruntergeladen" in page.text and "geöffnet" in page.text
    assert f'action="/pickup/{item_id}/code"' in page.text
    issued = client.post(f"/pickup/{item_id}/code", data={"csrf_token": csrf})
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
    found = re.search(r'id="pickup-code"><strong>([A-Z0-9]{8})</strong>', issued.text)
    assert found is not None
    with session_scope(services.sessions) as s:
        assert open_with_code(s, services.master_key, token, found.group(1),
                              now=clock()).outcome is Outcome.OPENED
    # The code is not on the ticket page afterwards.
    assert found.group(1) not in client.get(f"/tickets/{tid}").text


def test_another_teams_item_is_404_and_changes_nothing(
        client: TestClient, services: Services, clock: FakeClock,
        items: dict[str, tuple[int, int, str]]) -> None:
    csrf = web_login(client, "anna", PASSWORD, enrol(services.settings, "anna"), at=clock())
    _, theirs, _ = items[OTHER_BOX]
    before = code_hash(services, theirs)
    assert client.post(f"/pickup/{theirs}/code", data={"csrf_token": csrf}).status_code == 404
    assert client.post("/pickup/999999/code", data={"csrf_token": csrf}).status_code == 404
    assert client.post("/pickup/x1/code", data={"csrf_token": csrf}).status_code == 404
    assert code_hash(services, theirs) == before


def test_a_new_code_needs_the_csrf_token(client: TestClient, services: Services,
                                         clock: FakeClock,
                                         items: dict[str, tuple[int, int, str]]) -> None:
    web_login(client, "anna", PASSWORD, enrol(services.settings, "anna"), at=clock())
    _, mine, _ = items[BOX]
    before = code_hash(services, mine)
    assert client.post(f"/pickup/{mine}/code", data={}).status_code == 403
    assert code_hash(services, mine) == before


def test_an_expired_item_gets_no_new_code(client: TestClient, services: Services,
                                          clock: FakeClock,
                                          items: dict[str, tuple[int, int, str]]) -> None:
    secret = enrol(services.settings, "anna")
    tid, mine, _ = items[BOX]
    clock.now = clock() + timedelta(days=15)
    csrf = web_login(client, "anna", PASSWORD, secret, at=clock())
    assert "abgelaufen" in client.get(f"/tickets/{tid}").text
    refused = client.post(f"/pickup/{mine}/code", data={"csrf_token": csrf})
    assert refused.status_code == 409 and 'id="pickup-code"' not in refused.text


def test_an_item_put_up_without_a_code_asks_the_caseworker_for_one(
        client: TestClient, services: Services, clock: FakeClock,
        items: dict[str, tuple[int, int, str]]) -> None:
    """The delivery step puts a reply up without a code when no SMS can carry it: the ticket
    says so (not 'locked') until a member issues one."""
    csrf = web_login(client, "anna", PASSWORD, enrol(services.settings, "anna"), at=clock())
    tid = items[BOX][0]
    with session_scope(services.sessions) as s:
        made = create_item(s, services.master_key, ticket_id=tid,
                           recipient="vater@web.example", message=reply_message(),
                           actor="worker", now=clock(), with_code=False)
    assert made.code == "" and code_hash(services, made.item_id) is None
    item = re.search(rf'<li id="pickup-{made.item_id}">.*?</li>',
                     client.get(f"/tickets/{tid}").text, re.S)
    assert item is not None
    assert "noch kein Abholcode ausgegeben" in item.group(0)
    assert "gesperrt" not in item.group(0)
    issued = client.post(f"/pickup/{made.item_id}/code", data={"csrf_token": csrf})
    assert issued.status_code == 200
    assert code_hash(services, made.item_id) is not None
    item = re.search(rf'<li id="pickup-{made.item_id}">.*?</li>',
                     client.get(f"/tickets/{tid}").text, re.S)
    assert item is not None and "noch kein Abholcode" not in item.group(0)
