"""The consent register's API (/api/v1/consents) with FastAPI's TestClient against real SQLite
and PostgreSQL databases: staff authentication, releases and their versions, the dry run,
scans, held reports, and JSON errors that name the field."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from admin_ui.app import create_app
from gateway import audit
from gateway.audit.view import opened as opened_audit
from gateway.clock import FakeClock
from gateway.consent.holds import CONSENT_HOLD_PREFIX, STATUTORY_HOLD_PREFIX
from gateway.db import read_scope, session_scope
from gateway.keydir.partners import add_partner
from gateway.models import AuditEntry, Direction, HoldKind, MessageState
from gateway.policy.consent import normalise_case
from gateway.queue.spool import Envelope
from gateway.settings import Settings
from gateway.staff import users as staff
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.support.db import message_state, opened, store_held
from tests.support.staff_web import add_tokens, bearer

PASSWORD = "ein sehr langes passwort"
# 11:00 in Berlin on 10 March 2026; the releases below run through March.
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
CASE = "51.2-1234/2026"
PARTNER_ADDRESS = "asd@jugendamt-b.example"
SENDER = "sb@jugendamt.example"
TEAM = "asd-nord@jugendamt.example"


def _basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# Caseworkers without the admin right: the register is theirs.
CASEWORKER = bearer("sachb")
COLLEAGUE = bearer("kolle")


def _release(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case": CASE, "data_subjects": ["Mia Muster"],
        "granted_by": {"name": "Petra Muster", "role": "parent"},
        "categories": ["Hilfeplan", "psychologisches Gutachten"],
        "recipients": [{"kind": "partner", "value": "Jugendamt B"},
                       {"kind": "address", "value": "Praxis@Beispiel.example"}],
        "purpose": "Hilfeplanung nach Umzug", "valid_from": "2026-03-01",
        "valid_until": "2026-03-31", "mailbox": TEAM}
    body.update(changes)
    return body


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # Small, so the oversize test needs no megabytes; 1 KiB is the settings' minimum.
    settings.consent.max_document_bytes = 1024
    # Two caseworkers only: every user costs an argon2 hash, in every test.
    with opened(settings) as sessions, session_scope(sessions) as session:
        staff.add_user(session, "sachb", PASSWORD, addresses=[SENDER])
        staff.add_user(session, "kolle", PASSWORD)
        # The team both work in: they manage its releases and its held reports (the same
        # rule as the console, admin_ui.security.rights.consent_scope).
        add_mailbox(session, TEAM, "ASD Nord")
        for member in ("sachb", "kolle"):
            add_member(session, TEAM, member, MemberRole.AGENT, actor="test", now=NOW)
        add_partner(session, "Jugendamt B", actor="test", now=NOW,
                    patterns=["jugendamt-b.example"])
    add_tokens(settings, "sachb", "kolle")
    with TestClient(create_app(settings, clock=FakeClock(NOW))) as test_client:
        yield test_client


def _create(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/v1/consents", headers=CASEWORKER, json=_release(**changes))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _check(client: TestClient, **body: str) -> dict[str, Any]:
    response = client.post("/api/v1/consents/check", headers=CASEWORKER,
                           json={"case": CASE, "category": "Hilfeplan",
                                 "recipient": PARTNER_ADDRESS, **body})
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


def _audit(settings: Settings) -> list[tuple[str, str, dict[str, Any]]]:
    with opened(settings) as sessions, read_scope(sessions) as session:
        assert audit.verify(session).ok
        return [(e.actor, e.action, e.details) for e in opened_audit(session, session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq)))]


def _hold(settings: Settings, kind: HoldKind, reason: str, *, case: str = CASE) -> str:
    """An outbound report the consent gate holds, as the consent stage leaves it."""
    return store_held(settings, Envelope(
        Direction.OUTBOUND, TEAM, [PARTNER_ADDRESS], b"Subject: Bericht\r\n\r\nx\r\n",
        auth_user="sachb"), kind=kind, reason=reason, now=NOW, facts={
            "consent:case": case, "consent:category": "Hilfeplan",
            "consent:legal_basis": "§ 8a SGB VIII"}, case_reference=normalise_case(case))


# --- authentication -------------------------------------------------------------------------


def _add_users(settings: Settings) -> None:
    """An admin, and a disabled user whose password is right."""
    with opened(settings) as sessions, session_scope(sessions) as session:
        staff.add_user(session, "chef", PASSWORD, admin=True)
        staff.add_user(session, "alt", PASSWORD)
        staff.set_disabled(session, "alt", True)
    add_tokens(settings, "chef", "alt")


def test_without_valid_credentials_401(client: TestClient, settings: Settings) -> None:
    _add_users(settings)
    refused = [(headers, method, path)
               for headers in ({}, _basic("sachb"), bearer("niemand"), bearer("alt"))
               for method, path in (("GET", "/api/v1/consents"),
                                    ("POST", "/api/v1/consents/check"),
                                    ("GET", "/api/v1/consents/1/document"))]
    for headers, method, path in refused:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (headers, method, path)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="xgate admin"'
        assert response.json()["error"] == "unauthorized"
    # Admins are staff too.
    response = client.get("/api/v1/consents", headers=bearer("chef"))
    assert response.status_code == 200 and response.json() == {"releases": []}


# --- releases and versions ------------------------------------------------------------------


def test_caseworker_records_lists_and_reads(client: TestClient, settings: Settings) -> None:
    created = _create(client)
    assert created["rechecked"] == []
    release = created["release"]
    assert (release["version"], release["case"], release["state"]) == (1, CASE, "active")
    assert release["recorded_by"] == "sachb" and release["revoked_at"] is None
    # The library's canonical spellings: the partner's name, the address in lower case.
    assert release["recipients"] == [{"kind": "partner", "value": "Jugendamt B"},
                                     {"kind": "address", "value": "praxis@beispiel.example"}]
    assert release["granted_by"] == {"name": "Petra Muster", "role": "parent"}
    assert release["document"] is None

    other = _create(client, case="51.2-9999/2026")
    # Case references match as people type them: spacing and letter case carry no meaning.
    listed = client.get("/api/v1/consents", params={"case": " 51.2-1234/2026 "},
                        headers=CASEWORKER)
    assert listed.json() == {"releases": [release]}
    everything = client.get("/api/v1/consents", headers=CASEWORKER).json()["releases"]
    assert [r["id"] for r in everything] == [other["release"]["id"], release["id"]]

    shown = client.get(f"/api/v1/consents/{release['id']}", headers=CASEWORKER)
    assert shown.json() == {"id": release["id"], "versions": [release]}
    added = [(actor, detail) for actor, action, detail in _audit(settings)
             if action == "consent-added"]
    assert [actor for actor, _ in added] == ["sachb", "sachb"]
    assert added[0][1]["release"] == release["id"]
    # The audit trail is read by more people than the case file: no names in it.
    assert "Mia Muster" not in json.dumps(added)


def test_reading_releases_is_audited_without_names(client: TestClient,
                                                   settings: Settings) -> None:
    release = _create(client)["release"]
    assert client.get(f"/api/v1/consents/{release['id']}", headers=COLLEAGUE).status_code == 200
    assert client.get("/api/v1/consents", params={"case": CASE},
                      headers=CASEWORKER).status_code == 200
    assert client.get("/api/v1/consents/999", headers=COLLEAGUE).status_code == 404
    # Reading the held reports and the dry run show no names: not recorded as reads.
    client.get("/api/v1/consents/held", headers=COLLEAGUE)
    _check(client)
    reads = [(actor, action, detail) for actor, action, detail in _audit(settings)
             if action in ("consent-read", "consent-listed")]
    assert reads == [
        ("kolle", "consent-read", {"release": release["id"], "versions": [1], "via": "api"}),
        ("sachb", "consent-listed", {"case": CASE, "releases": [[release["id"], 1]],
                                     "via": "api"})]
    assert "Mia Muster" not in json.dumps(reads) and "Petra" not in json.dumps(reads)


def test_change_makes_a_new_version_and_keeps_the_old(client: TestClient,
                                                      settings: Settings) -> None:
    v1 = _create(client)["release"]
    path = f"/api/v1/consents/{v1['id']}/versions"
    narrower = _release(recipients=[{"kind": "partner", "value": "Jugendamt B"}],
                        note="Praxis gestrichen (Telefonat 9.3.)", expected_version=1)
    changed = client.post(path, headers=COLLEAGUE, json=narrower)
    assert changed.status_code == 201, changed.text
    v2 = changed.json()["release"]
    assert (v2["id"], v2["version"], v2["recorded_by"]) == (v1["id"], 2, "kolle")
    assert v2["recipients"] == [{"kind": "partner", "value": "Jugendamt B"}]
    assert v2["note"] == "Praxis gestrichen (Telefonat 9.3.)"

    versions = client.get(f"/api/v1/consents/{v1['id']}", headers=CASEWORKER).json()
    assert versions["versions"] == [v1, v2]
    # Someone working from version 1 learns that it changed meanwhile.
    stale = client.post(path, headers=CASEWORKER, json=narrower)
    assert stale.status_code == 409 and "is at version 2, not 1" in stale.json()["message"]

    no_note = client.post(path, headers=CASEWORKER, json=_release())
    assert no_note.status_code == 422 and "note: Field required" in no_note.json()["message"]
    blank = client.post(path, headers=CASEWORKER, json=_release(note="  "))
    assert blank.status_code == 422 and "why the release is changed" in blank.json()["message"]
    moved = client.post(path, headers=CASEWORKER,
                        json=_release(case="51.2-1/2026", note="falsche Akte"))
    assert moved.status_code == 422 and "another case" in moved.json()["message"]
    assert [a for _, a, _ in _audit(settings) if a.startswith("consent-")] == [
        "consent-added", "consent-changed", "consent-read"]


def test_revoke_then_check_denies(client: TestClient, settings: Settings) -> None:
    release = _create(client)["release"]
    allowed = _check(client)
    assert allowed["verdict"] == "allow"
    assert allowed["releases"] == [{"id": release["id"], "version": 1}]
    assert "covers case 51.2-1234/2026, category Hilfeplan" in allowed["reasons"][0]

    path = f"/api/v1/consents/{release['id']}/revoke"
    naive = client.post(path, headers=CASEWORKER,
                        json={"reason": "Brief", "revoked_at": "2026-03-09T12:00:00"})
    assert naive.status_code == 422 and naive.json()["message"].startswith("revoked_at: ")
    future = client.post(path, headers=CASEWORKER,
                         json={"reason": "Brief", "revoked_at": "2026-03-11T12:00:00+01:00"})
    assert future.status_code == 422 and "future" in future.json()["message"]

    revoked = client.post(path, headers=CASEWORKER, json={
        "reason": "Widerruf per Brief vom 9.3.", "revoked_at": "2026-03-09T12:00:00+01:00"})
    assert revoked.status_code == 200, revoked.text
    answer = revoked.json()
    assert answer["rechecked"] == []
    assert (answer["release"]["version"], answer["release"]["state"]) == (2, "revoked")
    assert answer["release"]["revoked_by"] == "sachb"
    assert answer["release"]["revoked_at"] == "2026-03-09T11:00:00+00:00"
    shown = client.get(f"/api/v1/consents/{release['id']}", headers=CASEWORKER).json()
    assert shown["versions"][-1] == answer["release"]

    denied = _check(client)
    assert denied["verdict"] == "deny"
    assert denied["releases"] == [{"id": release["id"], "version": 2}]
    assert any("was revoked at 2026-03-09T12:00:00+01:00" in r for r in denied["reasons"])

    again = client.post(path, headers=CASEWORKER, json={"reason": "nochmal"})
    assert again.status_code == 409 and "already revoked" in again.json()["message"]
    change = client.post(f"/api/v1/consents/{release['id']}/versions", headers=CASEWORKER,
                         json=_release(note="doch wieder"))
    assert change.status_code == 409 and "revoked" in change.json()["message"]
    revocations = [d for _, a, d in _audit(settings) if a == "consent-revoked"]
    assert [d["reason"] for d in revocations] == ["Widerruf per Brief vom 9.3."]


def test_check_holds_with_the_missing_part(client: TestClient) -> None:
    def verdict(**body: str) -> tuple[str, list[str]]:
        decision = _check(client, **body)
        return decision["verdict"], decision["reasons"]

    assert verdict() == ("hold", [f"no release for case {CASE}"])
    _create(client, categories=["Schulbericht"], valid_from="2026-03-01")
    assert verdict() == ("hold", [f"the releases for case {CASE} do not cover category "
                                  "Hilfeplan"])
    _create(client, recipients=[{"kind": "address", "value": "praxis@beispiel.example"}])
    assert verdict() == ("hold", [f"the releases for case {CASE} do not cover recipient "
                                  f"{PARTNER_ADDRESS}"])
    assert verdict(category="Horoskop") == ("hold", ["unknown category: Horoskop"])
    _create(client, valid_from="2026-04-01", valid_until="2026-12-31")
    assert verdict() == ("hold", ["not yet valid (from 2026-04-01)"])
    # The dry run on a later day: the release from April covers it then.
    assert verdict(date="2026-04-02")[0] == "allow"
    # By address: the release names the practice's address, the check spells it otherwise.
    assert verdict(recipient="PRAXIS@beispiel.example")[0] == "allow"


# --- the signed form ------------------------------------------------------------------------


def test_document_round_trip_is_audited(client: TestClient, settings: Settings) -> None:
    scan = b"%PDF-1.7\n\x00\xff binary scan\n"
    # Wrapped lines, as ``base64`` writes them.
    encoded = base64.encodebytes(scan).decode()
    release = _create(client, document={
        "filename": "Entbindung Müller.pdf", "content_type": "application/pdf",
        "data_base64": encoded})["release"]
    assert release["document"]["size"] == len(scan)
    assert release["document"]["filename"] == "Entbindung Müller.pdf"

    path = f"/api/v1/consents/{release['id']}/document"
    read = client.get(path, headers=COLLEAGUE)
    assert read.status_code == 200
    assert read.content == scan
    assert read.headers["content-type"] == "application/pdf"
    assert read.headers["cache-control"] == "no-store"
    assert read.headers["content-disposition"] == (
        "attachment; filename=\"Entbindung M_ller.pdf\"; "
        "filename*=UTF-8''Entbindung%20M%C3%BCller.pdf")

    # A new version without a new scan still relies on the old one.
    client.post(f"/api/v1/consents/{release['id']}/versions", headers=CASEWORKER,
                json=_release(note="verlängert", valid_until="2026-06-30"))
    assert client.get(path, headers=CASEWORKER).content == scan
    assert client.get(f"{path}?version=1", headers=CASEWORKER).content == scan
    missing = client.get(f"{path}?version=7", headers=CASEWORKER)
    assert missing.status_code == 404 and "no version 7" in missing.json()["message"]
    # Whoever saw the signed form is on record, with the version asked for (or the latest).
    reads = [(actor, detail["release"], detail["version"])
             for actor, action, detail in _audit(settings) if action == "consent-document-read"]
    assert reads == [("kolle", release["id"], 1), ("sachb", release["id"], 2),
                     ("sachb", release["id"], 1)]

    plain = _create(client)["release"]
    none = client.get(f"/api/v1/consents/{plain['id']}/document", headers=CASEWORKER)
    assert none.status_code == 404 and "has no document" in none.json()["message"]


# Each case costs a request, not a database: the fixture's users cost argon2 hashes.
BAD_DOCUMENTS: list[tuple[dict[str, str], str]] = [
    ({"filename": "a.pdf", "content_type": "application/pdf", "data_base64": "nicht base64!"},
     "document.data_base64: not valid base64"),
    ({"filename": "a.pdf", "content_type": "application/pdf",
      "data_base64": base64.b64encode(b"x" * 2048).decode()},
     "document.data_base64: the document is larger than 1024 bytes"),
    # Just over the limit: decoded, then refused by the library's exact check.
    ({"filename": "a.pdf", "content_type": "application/pdf",
      "data_base64": base64.b64encode(b"x" * 1025).decode()},
     "the release document is larger than 1024 bytes"),
    ({"filename": "a.pdf", "content_type": "text/html\r\nSet-Cookie: x", "data_base64": "eA=="},
     "document.content_type: "),
    ({"filename": "a\r\n.pdf", "content_type": "application/pdf", "data_base64": "eA=="},
     "document.filename: "),
]


def test_bad_documents_422(client: TestClient, settings: Settings) -> None:
    for document, message in BAD_DOCUMENTS:
        response = client.post("/api/v1/consents", headers=CASEWORKER,
                               json=_release(document=document))
        assert response.status_code == 422, message
        assert message in response.json()["message"], response.json()
        field, _, problem = message.partition(": ")
        if field.startswith("document."):
            assert response.json()["fields"][field].startswith(problem), response.json()
    assert not [a for _, a, _ in _audit(settings) if a == "consent-added"]


def test_far_oversize_upload_is_refused_while_it_arrives(client: TestClient) -> None:
    huge = _release(document={"filename": "a.pdf", "content_type": "application/pdf",
                              "data_base64": "A" * (2 * 1024 * 1024)})
    response = client.post("/api/v1/consents", headers=CASEWORKER, json=huge)
    assert response.status_code == 413
    assert set(response.json()) == {"error", "message"}


# --- JSON errors ----------------------------------------------------------------------------


INVALID_RELEASES: list[tuple[dict[str, Any], str]] = [
    # Refused by the request schema: the message names the field.
    ({"granted_by": None}, "granted_by: Field required"),
    ({"granted_by": {"name": "Onkel Otto", "role": "uncle"}}, "granted_by.role: "),
    ({"valid_from": "01.03.2026"}, "valid_from: Value error, expected a date as YYYY-MM-DD"),
    ({"valid_until": 0}, "valid_until: Value error, expected a date"),
    ({"recipients": [{"kind": "fax", "value": "0301234"}]}, "recipients[0].kind: "),
    ({"recipients": [{"kind": "address", "value": "  "}]},
     "recipients[0].value: Value error, must not be blank"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"data_subjects": "Mia"}, "data_subjects: "),
    ({"granted_by": {"name": "x" * 300, "role": "parent"}}, "granted_by.name: "),
    # Refused by the library's rules: still 422, with its message.
    ({"categories": ["Horoskop"]}, "unknown category 'Horoskop'"),
    ({"recipients": [{"kind": "partner", "value": "Jugendamt Z"}]},
     "no partner 'Jugendamt Z' in the key directory"),
    ({"recipients": [{"kind": "address", "value": "kein-at"}]},
     "not an e-mail address: 'kein-at'"),
    ({"valid_from": "2026-04-01", "valid_until": "2026-03-01"}, "is after valid until"),
    ({"data_subjects": [" "]}, "name at least one data subject"),
]


def test_invalid_releases_are_json_422(client: TestClient, settings: Settings) -> None:
    for changes, message in INVALID_RELEASES:
        body = _release(**changes)
        for name, value in changes.items():
            if value is None:
                del body[name]
        response = client.post("/api/v1/consents", headers=CASEWORKER, json=body)
        assert response.status_code == 422, message
        answer = response.json()
        assert message in answer["message"], answer
        # The schema's refusals name the field apart too (admin_ui.api.errors); the library's
        # rules answer with their message alone.
        field, colon, problem = message.partition(": ")
        if colon and " " not in field:  # "granted_by.role: ...", not a sentence
            assert set(answer) == {"error", "message", "fields"}, answer
            assert answer["fields"][field].startswith(problem), answer
        else:
            assert set(answer) == {"error", "message"}, answer
    assert not [a for _, a, _ in _audit(settings) if a == "consent-added"]


def test_other_request_errors_are_json(client: TestClient) -> None:
    broken = client.post("/api/v1/consents", headers={**CASEWORKER,
                                                      "Content-Type": "application/json"},
                         content=b"{nope")
    assert broken.status_code == 422
    assert broken.json() == {"error": "invalid_request", "message": "the body is not valid JSON",
                             "fields": {"body": "not valid JSON"}}
    wrong_date = client.post("/api/v1/consents/check", headers=CASEWORKER, json={
        "case": CASE, "category": "Hilfeplan", "recipient": PARTNER_ADDRESS,
        "date": "morgen"})
    assert wrong_date.status_code == 422
    assert wrong_date.json()["message"].startswith("date: ")
    version = client.get("/api/v1/consents/1/document?version=x", headers=CASEWORKER)
    assert version.status_code == 422
    assert version.json()["message"].startswith("query parameter version: ")
    assert list(version.json()["fields"]) == ["query parameter version"]

    for path in ("/api/v1/consents/999", "/api/v1/consents/abc"):
        missing = client.get(path, headers=CASEWORKER)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", path
    # No release and another team's release answer alike (tests/test_api_consent_scope.py).
    assert client.get("/api/v1/consents/999", headers=CASEWORKER).json()["message"] == (
        "no such resource: /api/v1/consents/999")
    assert client.post("/api/v1/consents/999/revoke", headers=CASEWORKER,
                       json={"reason": "x"}).status_code == 404
    assert client.post("/api/v1/consents/999/versions", headers=CASEWORKER,
                       json=_release(note="x")).status_code == 404
    # Larger than any id column holds: a 422, not an overflow in the database driver.
    huge = client.get(f"/api/v1/consents/{10**20}", headers=CASEWORKER)
    assert huge.status_code == 422 and huge.json()["message"].startswith(
        "path parameter release_id: ")
    # The fixed paths are not taken for an id.
    assert client.get("/api/v1/consents/check", headers=CASEWORKER).status_code == 405


# --- held reports ---------------------------------------------------------------------------


def test_held_reports_and_statutory_approval(client: TestClient, settings: Settings) -> None:
    assert client.get("/api/v1/consents/held", headers=CASEWORKER).json() == {"held": []}
    waiting = _hold(settings, HoldKind.STATUTORY_APPROVAL,
                    f"{STATUTORY_HOLD_PREFIX} on § 8a SGB VIII: "
                              f"{PARTNER_ADDRESS}: no current release")
    held = client.get("/api/v1/consents/held", headers=CASEWORKER).json()["held"]
    assert [(h["queue_id"], h["case"], h["awaiting_approval"], h["recipients"])
            for h in held] == [(waiting, CASE, True, [PARTNER_ADDRESS])]

    path = f"/api/v1/consents/held/{waiting}/approve"
    own = client.post(path, headers=CASEWORKER, json={"reason": "Kindeswohl"})
    assert own.status_code == 422 and "second, different person" in own.json()["message"]
    unknown = client.post("/api/v1/consents/held/NOPE/approve", headers=COLLEAGUE,
                          json={"reason": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    no_reason = client.post(path, headers=COLLEAGUE, json={})
    assert no_reason.status_code == 422 and no_reason.json()["message"].startswith("reason: ")

    approved = client.post(path, headers=COLLEAGUE, json={"reason": "Gefährdung akut"})
    assert approved.status_code == 200
    assert approved.json() == {"queue_id": waiting, "approved_by": "kolle"}
    assert message_state(settings, waiting) is MessageState.DEFERRED
    again = client.post(path, headers=COLLEAGUE, json={"reason": "nochmal"})
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert [(actor, detail) for actor, action, detail in _audit(settings)
            if action == "statutory-approved"] == [("kolle", {"reason": "Gefährdung akut"})]


def test_approving_a_report_without_justification_is_refused(client: TestClient,
                                                              settings: Settings) -> None:
    waiting = _hold(settings, HoldKind.STATUTORY_APPROVAL,
                    f"{STATUTORY_HOLD_PREFIX} on § 8a SGB VIII: {PARTNER_ADDRESS}: "
                              "no current release covers this message; statutory basis "
                              "invoked: § 8a SGB VIII, a justification is required")
    refused = client.post(f"/api/v1/consents/held/{waiting}/approve", headers=COLLEAGUE,
                          json={"reason": "Gefährdung akut"})
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "refused",
        "message": f"message {waiting} has no justification (X-Xgate-Justification): a "
                   "transfer on a legal basis does not leave without one, approved or not; "
                   "the sender has to send it again with the reasons in that field"}
    assert message_state(settings, waiting) is MessageState.HELD
    assert not [a for _, a, _ in _audit(settings) if a == "statutory-approved"]


def test_a_new_release_rechecks_the_case_held_reports(client: TestClient,
                                                      settings: Settings) -> None:
    mine = _hold(settings, HoldKind.CONSENT,
                 f"{CONSENT_HOLD_PREFIX}{PARTNER_ADDRESS}: no release for case")
    other = _hold(settings, HoldKind.CONSENT, f"{CONSENT_HOLD_PREFIX}no release",
                  case="51.2-7/2026")
    created = _create(client)
    assert created["rechecked"] == [mine]
    assert message_state(settings, mine) is MessageState.DEFERRED
    assert message_state(settings, other) is MessageState.HELD
