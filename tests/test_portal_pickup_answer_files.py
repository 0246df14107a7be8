"""Files with the citizen's answer on the pickup page, over HTTP against the portal app on
SQLite and PostgreSQL: read in memory within the portal's limits, scanned by the real clamd
in the request (EICAR refused by name, nothing queued), threaded into the same ticket by the
real worker with the file attached; refusals name the problem and store nothing."""

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
from gateway.portal.pickup.items import create_item
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.tickets.models import Article, ArticleKind, Ticket
from mailboxes.tickets.records import create_ticket
from tests.support.clamd import EICAR
from tests.support.pipeline import drain, filed_copies
from tests.test_portal_pickup import CITIZEN, START, reply_message

BOX = "kita@jugendamt.example"


@pytest.fixture
def opened_item(services: Services, clock: FakeClock) -> Iterator[tuple[TestClient, str, int]]:
    """A portal client that opened an item with its code: (client, token, ticket id)."""
    clock.now = START
    services.settings.portal.max_files = 2
    services.settings.portal.max_upload_bytes = 64 * 1024
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kita")
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=CITIZEN,
                               subject="Antrag", actor="anna", now=START)
        item = create_item(s, services.master_key, ticket_id=tid, recipient=CITIZEN,
                           message=reply_message(), actor="anna", now=START,
                           valid_for=timedelta(days=7))
    with TestClient(create_portal_app(services.settings, clock=clock)) as client:
        page = client.get(f"/p/{item.token}")
        client.post(f"/p/{item.token}", data={"code": item.code,
                                               "form_token": _field(page.text)})
        yield client, item.token, tid


def _field(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _answer(client: TestClient, token: str, text: str,
            files: list[tuple[str, bytes]]) -> httpx.Response:
    page = client.get(f"/p/{token}/message")
    assert 'enctype="multipart/form-data"' in page.text and 'name="files"' in page.text
    return client.post(f"/p/{token}/answer",
                       data={"text": text, "form_token": _field(page.text)},
                       files=[("files", (name, data, "application/octet-stream"))
                              for name, data in files])


def _queued_answers(services: Services) -> int:
    with read_scope(services.sessions) as s:
        return len(list(s.scalars(select(Message.id).where(Message.mail_from == CITIZEN))))


def _answered(services: Services) -> int:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action))).count("pickup-answered")


def test_an_answer_with_a_file_lands_in_the_same_ticket(
        opened_item: tuple[TestClient, str, int], services: Services) -> None:
    client, token, ticket_id = opened_item
    sent = _answer(client, token, "Anbei die Bescheinigung.",
                   [("../../Gehalts\u202enachweis.pdf", b"%PDF-1.4 lohn")])
    assert sent.status_code == 200 and "Antwort gesendet" in sent.text
    assert _answered(services) == 1
    drain(services)
    with read_scope(services.sessions) as s:
        assert len(list(s.scalars(select(Ticket)))) == 1
        kinds = list(s.scalars(select(Article.kind).where(Article.ticket_id == ticket_id)))
    assert kinds.count(ArticleKind.INBOUND.value) == 1
    [filed] = filed_copies(services, BOX)
    assert b"Anbei die Bescheinigung." in filed and b"%PDF-1.4 lohn" not in filed  # base64
    assert b'filename="Gehaltsnachweis.pdf"' in filed  # path and RTL override removed
    assert b"JVBERi0xLjQgbG9obg==" in filed  # the file's bytes, base64


def test_an_infected_file_is_refused_by_name_and_nothing_is_queued(
        opened_item: tuple[TestClient, str, int], services: Services) -> None:
    client, token, _ = opened_item
    refused = _answer(client, token, "Hier die Datei.",
                      [("ok.txt", b"harmlos"), ("rechnung.com", EICAR)])
    assert refused.status_code == 422
    assert "Schadsoftware" in refused.text and "rechnung.com" in refused.text
    assert f'href="/p/{token}/message"' in refused.text
    assert (_queued_answers(services), _answered(services)) == (0, 0)


@pytest.mark.parametrize(("files", "status", "says"), [
    ([("leer.pdf", b"")], 422, "„leer.pdf“ ist leer"),
    ([("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")], 413, "höchstens 2"),
    ([("gross.bin", b"x" * (64 * 1024 + 1))], 413, "höchstens 0.1 MB"),
])
def test_refused_files_name_the_problem_and_store_nothing(
        opened_item: tuple[TestClient, str, int], services: Services,
        files: list[tuple[str, bytes]], status: int, says: str) -> None:
    client, token, _ = opened_item
    refused = _answer(client, token, "Text", files)
    assert refused.status_code == status and says in refused.text
    assert (_queued_answers(services), _answered(services)) == (0, 0)


def test_the_answer_form_works_without_files_as_before(
        opened_item: tuple[TestClient, str, int], services: Services) -> None:
    client, token, _ = opened_item
    sent = _answer(client, token, "Nur Text.", [])
    assert sent.status_code == 200
    assert _queued_answers(services) == 1


def test_an_answer_beyond_the_concurrent_uploads_is_turned_away_unread(
        services: Services, clock: FakeClock) -> None:
    """Each answer may hold up to max_upload_bytes in memory: with every slot busy the next
    gets 503 with Retry-After and a page that says so, and nothing is queued."""
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    from gateway.portal.pickup.routes import pickup_router
    from gateway.portal.render import PortalRenderer
    from gateway.portal.upload_slots import UploadSlots

    clock.now = START
    slots = UploadSlots(1)
    app = FastAPI()
    app.mount("/static", StaticFiles(packages=[("gateway.portal", "static")]), name="static")
    app.include_router(pickup_router(
        services.sessions, services.master_key, clock, PortalRenderer(), max_tries=5,
        secure_cookies=False, hostname="gw.example", settings=services.settings,
        slots=slots))
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kita")
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=CITIZEN,
                               subject="Antrag", actor="anna", now=START)
        item = create_item(s, services.master_key, ticket_id=tid, recipient=CITIZEN,
                           message=reply_message(), actor="anna", now=START)
    with TestClient(app) as client:
        page = client.get(f"/p/{item.token}")
        client.post(f"/p/{item.token}", data={"code": item.code,
                                               "form_token": _field(page.text)})
        with slots.slot():
            busy = _answer(client, item.token, "Danke", [("a.txt", b"a")])
        assert busy.status_code == 503 and busy.headers["retry-after"] == "60"
        assert "in einer Minute" in busy.text
        assert _queued_answers(services) == 0
        assert _answer(client, item.token, "Danke", [("a.txt", b"a")]).status_code == 200
    assert _queued_answers(services) == 1


def test_uploads_and_answers_share_one_bound(opened_item: tuple[TestClient, str, int],
                                             services: Services) -> None:
    """The portal's memory is bounded by max_concurrent_uploads bodies in all: a slot an
    upload holds is one an answer cannot take (one UploadSlots for both routers)."""
    client, token, _tid = opened_item
    slots = client.app.state.upload_slots  # type: ignore[attr-defined]
    holding = [slots.slot() for _ in range(slots.limit)]
    for slot in holding:
        slot.__enter__()
    try:
        busy = _answer(client, token, "Danke", [("a.txt", b"a")])
        upload = client.post("/upload", data={"topic": "x"})
    finally:
        for slot in holding:
            slot.__exit__(None, None, None)
    assert busy.status_code == 503 and upload.status_code == 503
    assert _queued_answers(services) == 0
    assert _answer(client, token, "Danke", [("a.txt", b"a")]).status_code == 200
