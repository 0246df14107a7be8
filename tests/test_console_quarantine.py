"""The console's quarantine pages over HTTP (TestClient, real SQLite and PostgreSQL, the
session's real clamd for the re-scan): the paged list, a message's transfer facts, the
four-eyes release as ``xgate quarantine release`` does it, deleting with a reason; refusals
on the page with nothing stored; the rights (admins only; auditor, DPO and caseworker 403);
unknown and malformed ids 404; the CSRF token on every form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select, update

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import Direction, Message, MessageState, SealedContent
from gateway.quarantine.models import QuarantineDecision
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from tests.support.clamd import EICAR, shared_clamd
from tests.support.console_admin import (
    PASSWORD,
    add_console_admins,
    as_user,
    audit_trail,
    not_forbidden,
)
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ALICE, BOB = as_user("alice"), as_user("bob")


def mail(body: bytes) -> bytes:
    return (b"From: a@partner.example\r\nTo: asd@jugendamt.example\r\n"
            b"Subject: Stellungnahme\r\n\r\n" + body + b"\r\n")


def quarantine(services: Services, body: bytes = b"Bericht ohne Befund",
               reason: str = "infected: Doc.Macro.Heuristic FOUND") -> str:
    with session_scope(services.sessions) as s:
        qid = store_received(s, services.master_key, Envelope(
            Direction.INBOUND, "a@partner.example", ["asd@jugendamt.example"], mail(body)),
            actor="test", now=services.clock()).queue_id
        # No pipeline here: put the message where the scan stage would.
        s.execute(update(Message).where(Message.queue_id == qid).values(
            state=MessageState.QUARANTINED, reason=reason))
    return qid


def state(services: Services, qid: str) -> MessageState:
    with read_scope(services.sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


def decisions(services: Services) -> int:
    with read_scope(services.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(QuarantineDecision)) or 0)


@pytest.fixture
def client(services: Services, clock: FakeClock) -> Iterator[TestClient]:
    add_console_admins(services.settings, services.sessions)
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        yield c


def release(client: TestClient, qid: str, who: dict[str, str], reason: str = "Fehlalarm"
            ) -> Response:
    response: Response = client.post(f"/console/quarantine/{qid}/release",
                                     data={"reason": reason}, headers=who,
                                     follow_redirects=False)
    return response


def test_list_shows_verdict_and_reason_never_content(client: TestClient,
                                                     services: Services) -> None:
    qid = quarantine(services)
    page = client.get("/console/quarantine", headers=ALICE)
    assert page.status_code == 200
    assert qid in page.text and "infected: Doc.Macro.Heuristic FOUND" in page.text
    assert "a@partner.example" in page.text and "0/2" in page.text
    assert "Bericht ohne Befund" not in page.text and "Stellungnahme" not in page.text
    detail = client.get(f"/console/quarantine/{qid}", headers=ALICE)
    assert detail.status_code == 200 and "asd@jugendamt.example" in detail.text
    assert "Bericht ohne Befund" not in detail.text and "Stellungnahme" not in detail.text
    assert 'name="csrf_token"' in detail.text


def test_list_is_paged(client: TestClient, services: Services, clock: FakeClock) -> None:
    ids = []
    for _ in range(53):
        ids.append(quarantine(services))
        clock.advance(seconds=1)
    first = client.get("/console/quarantine", headers=ALICE).text
    second = client.get("/console/quarantine?page=2", headers=ALICE).text
    assert "53 Nachricht(en), Seite 1 von 2" in first
    assert ids[0] in first and ids[49] in first and ids[50] not in first
    assert ids[50] in second and ids[52] in second and ids[0] not in second
    assert 'rel="next"' in first and 'rel="prev"' in second
    # Nonsense page numbers show the first page rather than an error.
    assert ids[0] in client.get("/console/quarantine?page=x", headers=ALICE).text


def test_four_eyes_release(client: TestClient, services: Services) -> None:
    qid = quarantine(services)
    first = release(client, qid, ALICE, "Fehlalarm laut Hersteller")
    assert first.status_code == 303
    page = client.get(first.headers["location"], headers=ALICE)
    assert "Ihre Freigabe ist vermerkt" in page.text and 'id="own-approval"' in page.text
    assert state(services, qid) is MessageState.QUARANTINED

    # The same admin again: refused on the page, nothing stored.
    again = release(client, qid, ALICE, "nochmal")
    assert again.status_code == 409
    assert "alice hat die Freigabe schon beantragt" in again.text
    assert decisions(services) == 1 and state(services, qid) is MessageState.QUARANTINED

    second = release(client, qid, BOB, "geprüft, Vorlage ist harmlos")
    assert second.status_code == 303
    assert second.headers["location"].endswith("done=released")
    assert state(services, qid) is MessageState.DEFERRED
    trail = [(actor, action) for actor, action, _ in audit_trail(services.sessions)]
    assert ("admin:alice", "quarantine-release-approval") in trail
    assert ("admin:bob", "quarantine-release-approval") in trail
    assert ("admin:bob", "quarantine-released") in trail


def test_release_of_infected_content_is_refused_after_the_rescan(
        client: TestClient, services: Services) -> None:
    qid = quarantine(services, body=EICAR)
    release(client, qid, ALICE)
    refused = release(client, qid, BOB)
    assert refused.headers["location"].endswith("done=refused")
    page = client.get(f"/console/quarantine/{qid}", headers=BOB).text
    assert "Freigabe abgelehnt" in page and "nicht sauber" in page and "0/2" in page
    assert state(services, qid) is MessageState.QUARANTINED


def test_delete_with_a_reason(client: TestClient, services: Services) -> None:
    qid = quarantine(services)
    missing = client.post(f"/console/quarantine/{qid}/delete", data={"reason": "  "},
                          headers=ALICE)
    assert missing.status_code == 409 and "Bitte geben Sie eine Begründung an" in missing.text
    assert state(services, qid) is MessageState.QUARANTINED
    done = client.post(f"/console/quarantine/{qid}/delete", data={"reason": "Schadsoftware"},
                       headers=ALICE, follow_redirects=False)
    assert done.status_code == 303
    assert state(services, qid) is MessageState.REJECTED
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(SealedContent)) == 0
    assert any(actor == "admin:alice" and action == "quarantine-deleted" and
               detail.get("reason") == "Schadsoftware"
               for actor, action, detail in audit_trail(services.sessions))
    # Deleted is deleted: neither release nor delete again.
    assert release(client, qid, BOB).status_code == 409


def test_too_long_a_reason_is_refused_whole(client: TestClient, services: Services) -> None:
    qid = quarantine(services)
    response = release(client, qid, ALICE, "x" * 2001)
    assert response.status_code == 409
    assert "höchstens 2000 Zeichen" in response.text
    english = client.post(f"/console/quarantine/{qid}/release", data={"reason": "x" * 2001},
                          headers={**ALICE, "Accept-Language": "en"})
    assert "The reason is too long (at most 2000 characters)" in english.text
    assert decisions(services) == 0


@pytest.mark.parametrize("path", ["/console/quarantine/{qid}", "/console/quarantine"])
def test_other_roles_get_403(client: TestClient, services: Services, path: str) -> None:
    qid = quarantine(services)
    assert list(not_forbidden(client, "GET", path.format(qid=qid))) == []
    for action in ("release", "delete"):
        assert list(not_forbidden(client, "POST", f"/console/quarantine/{qid}/{action}",
                                         {"reason": "x"})) == []
    assert decisions(services) == 0 and state(services, qid) is MessageState.QUARANTINED


@pytest.mark.parametrize("qid", ["0000000000000000", "nichts", "%2e%2e", "A" * 40])
def test_unknown_or_malformed_ids_404(client: TestClient, services: Services,
                                      qid: str) -> None:
    assert client.get(f"/console/quarantine/{qid}", headers=ALICE).status_code == 404
    for action in ("release", "delete"):
        response = client.post(f"/console/quarantine/{qid}/{action}", data={"reason": "x"},
                               headers=ALICE)
        assert response.status_code == 404
    assert decisions(services) == 0


def test_forms_need_the_csrf_token(client: TestClient, services: Services,
                                   clock: FakeClock) -> None:
    qid = quarantine(services)
    csrf = web_login(client, "alice", PASSWORD, enrol(services.settings, "alice"), at=clock())
    page = client.get(f"/console/quarantine/{qid}")
    assert form_csrf(page.text) == csrf
    without = client.post(f"/console/quarantine/{qid}/release", data={"reason": "x"})
    assert without.status_code == 403 and decisions(services) == 0
    with_token = client.post(f"/console/quarantine/{qid}/release",
                             data={"reason": "x", "csrf_token": csrf}, follow_redirects=False)
    assert with_token.status_code == 303 and decisions(services) == 1


def test_rescan_all_runs_as_a_task_and_marks_what_is_now_clean(
        client: TestClient, services: Services) -> None:
    clean = quarantine(services)
    infected = quarantine(services, body=EICAR)
    started = client.post("/console/quarantine/rescan", headers=ALICE, follow_redirects=False)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith("/console/tasks/")
    runner = client.app.state.tasks  # type: ignore[attr-defined]
    runner.wait(int(location.rsplit("/", 1)[1]))
    page = client.get(location, headers=ALICE).text
    assert 'data-state="done"' in page
    assert 'id="rescan-clean">1<' in page and 'id="rescan-not-clean">1<' in page
    assert f'href="/console/quarantine/{clean}"' in page and infected not in page
    # Nothing is released; the clean one now waits for admins.
    assert state(services, clean) is MessageState.QUARANTINED
    assert "jetzt sauber" in client.get("/console/quarantine", headers=ALICE).text
    rescans = [(actor, detail["verdict"]) for actor, action, detail
               in audit_trail(services.sessions) if action == "quarantine-rescanned"]
    assert sorted(rescans) == [("admin:alice", "clean"), ("admin:alice", "not-clean")]
    # Others may neither start one nor see this one.
    assert list(not_forbidden(client, "POST", "/console/quarantine/rescan")) == []
    assert client.get(location, headers=as_user("pruef")).status_code == 404


def test_with_the_scanner_down_nothing_is_released_and_the_step_is_undone(
        client: TestClient, services: Services) -> None:
    qid = quarantine(services)
    with shared_clamd().stopped():
        # The first approval needs no scan and is recorded.
        assert release(client, qid, ALICE).status_code == 303
        second = release(client, qid, BOB)
        assert second.status_code == 503
        assert "Der Virenscanner ist nicht erreichbar" in second.text
        started = client.post("/console/quarantine/rescan", headers=ALICE,
                              follow_redirects=False).headers["location"]
        client.app.state.tasks.wait(int(started.rsplit("/", 1)[1]))  # type: ignore[attr-defined]
        assert 'data-state="failed"' in client.get(started, headers=ALICE).text
    # Bob's approval went with the failed scan; alice's stays.
    assert decisions(services) == 1 and state(services, qid) is MessageState.QUARANTINED
    assert release(client, qid, BOB).headers["location"].endswith("done=released")
