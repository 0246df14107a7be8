"""The pickup pages of the portal app over HTTP (SQLite and PostgreSQL): the same page for an
unknown link, the message with the right code, the portal's own session cookie for the
downloads (RFC 6266, nosniff, no-store, audited), wrong codes locking, expiry, CSRF, and
another citizen's link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, Message
from gateway.portal.app import create_portal_app
from gateway.portal.pickup import cookies
from gateway.portal.pickup.downloads import content_disposition
from gateway.portal.pickup.items import create_item
from gateway.portal.pickup.models import PickupDownload
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.tickets.records import create_ticket
from tests.test_portal_pickup import CITIZEN, START, reply_message


@pytest.fixture
def made(services: Services, clock: FakeClock) -> list[tuple[str, str]]:
    """Two items (two citizens' links): (token, code) each."""
    clock.now = START
    out = []
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, "kita@jugendamt.example", "Kita")
        for who in (CITIZEN, "vater@example.org"):
            tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=who,
                                   subject="Antrag", actor="anna", now=START)
            item = create_item(s, services.master_key, ticket_id=tid, recipient=who,
                               message=reply_message(), actor="anna", now=START,
                               valid_for=timedelta(days=7))
            out.append((item.token, item.code))
    return out


@pytest.fixture
def client(services: Services, clock: FakeClock) -> Iterator[TestClient]:
    services.settings.portal.pickup_max_tries = 3
    with TestClient(create_portal_app(services.settings, clock=clock)) as c:
        yield c


def submit(client: TestClient, token: str, code: str) -> httpx.Response:
    page = client.get(f"/p/{token}")
    field = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert field is not None
    return client.post(f"/p/{token}", data={"code": code, "form_token": field.group(1)})


def test_right_code_shows_the_message_and_downloads_are_audited(
        client: TestClient, made: list[tuple[str, str]], services: Services) -> None:
    token, code = made[0]
    page = client.get(f"/p/{token}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'name="code"' in page.text
    # Before the code, no download.
    assert client.get(f"/p/{token}/files/0").status_code == 403
    shown = submit(client, token, code.lower())
    assert shown.status_code == 200
    assert "anbei der Bescheid" in shown.text
    assert f"/p/{token}/files/0" in shown.text
    assert cookies.SESSION_COOKIE in client.cookies
    got = client.get(f"/p/{token}/files/0")
    assert got.status_code == 200 and got.content == b"%PDF-1.4 bescheid"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Bescheid.pdf\"; filename*=UTF-8''Bescheid.pdf")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["content-type"] == "application/octet-stream"
    assert client.get(f"/p/{token}/message").status_code == 200
    assert client.get(f"/p/{token}/files/7").status_code == 404
    with read_scope(services.sessions) as s:
        assert len(list(s.scalars(select(PickupDownload)))) == 1
        acts = list(s.scalars(select(AuditEntry.action)))
    assert acts.count("pickup-downloaded") == 1 and acts.count("pickup-opened") == 2


def test_unknown_link_and_wrong_code_look_the_same(client: TestClient,
                                                   made: list[tuple[str, str]]) -> None:
    token, code = made[0]
    unknown = submit(client, "A" * 43, code)
    wrong = submit(client, token, "ZZZZ2222")
    assert unknown.status_code == wrong.status_code == 400
    assert _neutral(unknown.text, "A" * 43) == _neutral(wrong.text, token)
    assert client.get("/p/" + "A" * 43).status_code == 200


def _neutral(html: str, token: str) -> str:
    """The page without what differs by design: the link and the fresh form token."""
    return html.replace(token, "TOKEN").replace(_field(html), "FIELD")


def _field(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_another_citizens_session_does_not_open_this_link(
        client: TestClient, made: list[tuple[str, str]]) -> None:
    (mine, _), (theirs, their_code) = made
    assert submit(client, theirs, their_code).status_code == 200
    # Their session cookie is in the browser; it does not open my item's files or message.
    assert client.get(f"/p/{mine}/files/0").status_code == 403
    assert 'name="code"' in client.get(f"/p/{mine}/message").text
    assert submit(client, mine, their_code).status_code == 400


def test_wrong_codes_lock_the_item(client: TestClient, made: list[tuple[str, str]]) -> None:
    token, code = made[0]
    for _ in range(2):
        assert submit(client, token, "ZZZZ2222").status_code == 400
    locked = submit(client, token, "ZZZZ2222")
    assert locked.status_code == 403
    assert "gesperrt" in locked.text
    assert submit(client, token, code).status_code == 403


def test_an_expired_item_has_a_clear_page(client: TestClient, made: list[tuple[str, str]],
                                          clock: FakeClock) -> None:
    token, code = made[0]
    assert submit(client, token, code).status_code == 200
    clock.now = START + timedelta(days=7)
    gone = submit(client, token, code)
    assert gone.status_code == 410 and "abgelaufen" in gone.text
    # The session from before does not reach the files any more either.
    assert client.get(f"/p/{token}/files/0").status_code in (403, 404)


def test_the_code_form_needs_its_form_token(client: TestClient,
                                            made: list[tuple[str, str]]) -> None:
    token, code = made[0]
    client.get(f"/p/{token}")
    refused = client.post(f"/p/{token}", data={"code": code, "form_token": "forged"})
    assert refused.status_code == 400 and "anbei" not in refused.text
    assert cookies.SESSION_COOKIE not in client.cookies


def test_file_names_in_the_header_are_safe() -> None:
    header = content_disposition("../../etc/pass\u202ewd\r\n\u00fcber.pdf")
    assert header == ("attachment; filename=\"passwd_ber.pdf\"; "
                      "filename*=UTF-8''passwd%C3%BCber.pdf")


def test_an_answer_from_the_message_page_is_queued_to_the_mailbox(
        client: TestClient, made: list[tuple[str, str]], services: Services) -> None:
    token, code = made[0]
    shown = submit(client, token, code)
    field = _field(shown.text)
    assert f'action="/p/{token}/answer"' in shown.text
    # Without the pickup session (another browser) nothing is taken.
    other = TestClient(client.app)
    assert other.post(f"/p/{token}/answer", data={"text": "x", "form_token": field}
                      ).status_code == 403
    assert client.post(f"/p/{token}/answer", data={"text": "Danke", "form_token": "forged"}
                       ).status_code == 400
    assert client.post(f"/p/{token}/answer", data={"text": " ", "form_token": field}
                       ).status_code == 400
    sent = client.post(f"/p/{token}/answer", data={"text": "Danke, bis Montag.",
                                                   "form_token": field})
    assert sent.status_code == 200 and "Antwort gesendet" in sent.text
    with read_scope(services.sessions) as s:
        queued = list(s.scalars(select(Message).where(Message.mail_from == CITIZEN)))
        assert [[r.address for r in m.recipients] for m in queued] == [
            ["kita@jugendamt.example"]]
        assert list(s.scalars(select(AuditEntry.action))).count("pickup-answered") == 1
