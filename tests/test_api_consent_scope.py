"""The consent API keeps the console's rule of who manages which releases
(admin_ui.security.rights.consent_scope): leads and agents the releases and held reports of
their own shared mailboxes, admins all of them, the auditor and the DPO none. A release or
held report of another team answers 404 like one that does not exist, on every route that
takes its id; lists leave it out; a release is recorded only in a mailbox of one's own."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from admin_ui.app import create_app
from gateway.clock import FakeClock
from gateway.consent.holds import CONSENT_HOLD_PREFIX
from gateway.db import session_scope
from gateway.keydir.partners import add_partner
from gateway.models import Direction, HoldKind
from gateway.policy.consent import normalise_case
from gateway.queue.spool import Envelope
from gateway.settings import Settings
from gateway.staff import roles
from gateway.staff import users as staff
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.support.clamd import EICAR
from tests.support.db import opened, store_held
from tests.support.staff_web import add_tokens, bearer

pytestmark = pytest.mark.usefixtures("cheap_hashing")

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
PASSWORD = "Sommer-Regen-2026!"
NORTH, SOUTH = "asd-nord@jugendamt.example", "asd-sued@jugendamt.example"
PARTNER_ADDRESS = "asd@jugendamt-b.example"
CASE = "51.2 - 0815/26"


def _release(mailbox: str | None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case": CASE, "data_subjects": ["Mia Muster"],
        "granted_by": {"name": "Petra Muster", "role": "parent"},
        "categories": ["Hilfeplan"],
        "recipients": [{"kind": "partner", "value": "Jugendamt B"}],
        "purpose": "Hilfeplanung", "valid_from": "2026-03-01", "valid_until": "2026-03-31",
        "document": {"filename": "scan.pdf", "content_type": "application/pdf",
                     "data_base64": base64.b64encode(b"%PDF-1.7\n").decode()}}
    if mailbox is not None:
        body["mailbox"] = mailbox
    body.update(changes)
    return body


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with opened(settings) as sessions, session_scope(sessions) as session:
        add_mailbox(session, NORTH, "ASD Nord")
        add_mailbox(session, SOUTH, "ASD Süd")
        for name in ("nord", "sued", "ohne", "pruefer", "chef"):
            staff.add_user(session, name, PASSWORD, admin=name == "chef")
        add_member(session, NORTH, "nord", MemberRole.AGENT, actor="test", now=NOW)
        add_member(session, SOUTH, "sued", MemberRole.LEAD, actor="test", now=NOW)
        roles.grant(session, "pruefer", roles.GlobalRole.AUDITOR, actor="test")
        add_partner(session, "Jugendamt B", actor="test", now=NOW,
                    patterns=["jugendamt-b.example"])
    add_tokens(settings, "nord", "sued", "ohne", "pruefer", "chef")
    with TestClient(create_app(settings, clock=FakeClock(NOW))) as test_client:
        yield test_client


def _held_from(settings: Settings, team: str) -> str:
    """An outbound report from ``team``'s address that the consent gate holds."""
    return store_held(settings, Envelope(
        Direction.OUTBOUND, team, [PARTNER_ADDRESS], b"Subject: Bericht\r\n\r\nx\r\n",
        auth_user="chef"), kind=HoldKind.CONSENT,
        reason=f"{CONSENT_HOLD_PREFIX}{PARTNER_ADDRESS}: no release", now=NOW, facts={
            "consent:case": CASE, "consent:category": "Hilfeplan"},
        case_reference=normalise_case(CASE))


def test_another_teams_release_is_out_of_reach_on_every_route(client: TestClient) -> None:
    created = client.post("/api/v1/consents", headers=bearer("nord"), json=_release(NORTH))
    assert created.status_code == 201, created.text
    rid = created.json()["release"]["id"]

    def answers(user: str) -> list[int]:
        who = bearer(user)
        return [
            client.get(f"/api/v1/consents/{rid}", headers=who).status_code,
            client.get(f"/api/v1/consents/{rid}/document", headers=who).status_code,
            client.post(f"/api/v1/consents/{rid}/versions", headers=who,
                        json=_release(None, note="enger")).status_code,
            client.post(f"/api/v1/consents/{rid}/revoke", headers=who,
                        json={"reason": "Brief"}).status_code,
        ]

    assert answers("sued") == [404, 404, 404, 404]
    assert answers("ohne") == [404, 404, 404, 404]
    assert answers("pruefer") == [403, 403, 403, 403]
    # The team itself and an admin reach it (the revocation last: it ends the release).
    assert answers("nord")[:3] == [200, 200, 201]
    assert answers("chef")[:2] == [200, 200]

    def listed(user: str) -> list[int]:
        answer = client.get("/api/v1/consents", headers=bearer(user))
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["releases"]]

    assert listed("nord") == [rid] and listed("chef") == [rid]
    assert listed("sued") == [] and listed("ohne") == []
    assert client.get("/api/v1/consents", headers=bearer("pruefer")).status_code == 403


def test_a_release_is_recorded_only_in_a_mailbox_of_ones_own(client: TestClient) -> None:
    def record(user: str, mailbox: str | None) -> tuple[int, str]:
        answer = client.post("/api/v1/consents", headers=bearer(user), json=_release(mailbox))
        return answer.status_code, answer.json().get("error", "")

    assert record("nord", SOUTH) == (422, "refused")
    assert record("nord", None) == (422, "refused")
    assert record("ohne", NORTH) == (422, "refused")
    assert record("pruefer", NORTH) == (403, "forbidden")
    unknown = client.post("/api/v1/consents", headers=bearer("chef"),
                          json=_release("niemand@jugendamt.example"))
    assert unknown.status_code == 422 and list(unknown.json()["fields"]) == ["mailbox"]
    assert record("nord", NORTH)[0] == 201
    # An admin may record anywhere, and without a mailbox, as ``xgate consent add`` does.
    assert record("chef", SOUTH)[0] == 201 and record("chef", None)[0] == 201


def test_held_reports_are_the_teams_own(client: TestClient, settings: Settings) -> None:
    north, south = _held_from(settings, NORTH), _held_from(settings, SOUTH)

    def held(user: str) -> list[str]:
        answer = client.get("/api/v1/consents/held", headers=bearer(user))
        assert answer.status_code == 200, answer.text
        return sorted(h["queue_id"] for h in answer.json()["held"])

    assert held("nord") == [north] and held("sued") == [south]
    assert held("ohne") == [] and held("chef") == sorted([north, south])
    assert client.get("/api/v1/consents/held", headers=bearer("pruefer")).status_code == 403

    def approve(user: str, queue_id: str) -> int:
        return client.post(f"/api/v1/consents/held/{queue_id}/approve", headers=bearer(user),
                           json={"reason": "Gefährdung"}).status_code

    # Another team's report answers like none; its own team reaches the library's rules
    # (a consent hold waits for a release, not an approval: 409 from the library, not 404).
    assert approve("sued", north) == 404 and approve("ohne", north) == 404
    assert approve("nord", north) == 409
    # The dry run is the register's too: the auditor has none.
    check = {"case": CASE, "category": "Hilfeplan", "recipient": PARTNER_ADDRESS}
    assert client.post("/api/v1/consents/check", headers=bearer("pruefer"),
                       json=check).status_code == 403
    assert client.post("/api/v1/consents/check", headers=bearer("ohne"),
                       json=check).status_code == 200


def test_the_scan_is_checked_as_in_the_console(client: TestClient) -> None:
    """A PDF or an image by its first bytes, stored with that type whatever the client
    said, and clean in clamd's eyes (gateway.consent.documents.checked_scan, the console's
    check): nothing else is recorded."""
    def record(data: bytes, content_type: str = "application/pdf") -> Any:
        body = _release(NORTH)
        body["document"] = {"filename": "scan.pdf", "content_type": content_type,
                            "data_base64": base64.b64encode(data).decode()}
        return client.post("/api/v1/consents", headers=bearer("nord"), json=body)

    html = record(b"<html><script>alert(1)</script></html>")
    assert html.status_code == 422 and "not a PDF or an image" in html.json()["message"]
    infected = record(b"%PDF-1.4\n" + EICAR)  # a PDF by its first bytes, and malware
    assert infected.status_code == 422 and "malware" in infected.json()["message"]
    assert client.get("/api/v1/consents", headers=bearer("nord")).json()["releases"] == []
    png = record(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, content_type="application/pdf")
    assert png.status_code == 201, png.text
    assert png.json()["release"]["document"]["content_type"] == "image/png"
