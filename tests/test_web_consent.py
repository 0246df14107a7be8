"""The console's consent register over HTTP (real SQLite and PostgreSQL, real clamd, the
app's clock mocked): the register and its search, recording a release with its scan (PDF or
image by content, clean by clamd, sealed), changing and revoking it, the audited download,
the dry run, held reports and their four-eyes approval; bad input answered on the page with
nothing stored. Rights: a caseworker of the mailbox yes, of another mailbox 404 on every id,
the auditor and the DPO 403, an admin everything; no login redirects, no CSRF token 403."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway import audit
from gateway.audit.view import opened as opened_audit
from gateway.clock import FakeClock
from gateway.consent.gate import dry_run
from gateway.consent.models import (
    ConsentDocument,
    ConsentRelease,
    ConsentVersion,
    StatutoryApproval,
)
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, HoldKind, Message, MessageState
from gateway.services import Services
from gateway.staff.roles import GlobalRole, grant
from gateway.staff.users import add_user
from tests.support.clamd import EICAR
from tests.support.consent_web import (
    PARTNER,
    PARTNER_ADDRESS,
    held_report,
    partner,
    recorded,
    release_input,
    small_pdf,
)
from tests.support.staff_web import BASE_URL, enrol, form_csrf, web_login
from tests.support.ticket_web import BOX, OTHER_BOX, PASSWORD, two_teams

pytestmark = pytest.mark.usefixtures("cheap_hashing")

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Berlin
START, END = date(2026, 3, 1), date(2026, 3, 31)
MINE, THEIRS, NOBODYS = "51.2-1000/2026", "51.2-2000/2026", "51.2-3000/2026"
NEW_CASE = "51.2-4711/2026"


@dataclass(frozen=True)
class World:
    services: Services
    mine: int          # a release of BOX (anna, lena)
    theirs: int        # a release of OTHER_BOX (bert)
    nobodys: int       # a release recorded without a mailbox (the CLI's way)
    held_mine: str     # a transfer on a legal basis from BOX, sent by lena
    held_theirs: str   # the same from OTHER_BOX, sent by root
    # Each user's TOTP secret, once enrolled.
    secrets: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def world(services: Services, clock: FakeClock) -> World:
    clock.now = NOW
    two_teams(services)
    with session_scope(services.sessions) as s:
        add_user(s, "audi", PASSWORD)
        add_user(s, "dora", PASSWORD)
        grant(s, "audi", GlobalRole.AUDITOR, actor="test")
        grant(s, "dora", GlobalRole.DPO, actor="test")
    partner(services)
    return World(services,
                 recorded(services, release_input(MINE, start=START, end=END), BOX),
                 recorded(services, release_input(THEIRS, subject="Max Beispiel", start=START,
                                                  end=END), OTHER_BOX),
                 recorded(services, release_input(NOBODYS, start=START, end=END), None),
                 held_report(services, BOX, MINE, auth_user="lena"),
                 held_report(services, OTHER_BOX, THEIRS, auth_user="root"))


@pytest.fixture
def client(world: World, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(world.services.settings, clock=clock),
                    base_url=BASE_URL) as c:
        yield c


def login(client: TestClient, world: World, user: str) -> str:
    client.cookies.clear()
    if user not in world.secrets:
        world.secrets[user] = enrol(world.services.settings, user)
    return web_login(client, user, PASSWORD, world.secrets[user], at=NOW)


def mailbox_id(world: World, address: str) -> int:
    from mailboxes.directory import find_mailbox
    with read_scope(world.services.sessions) as s:
        box = find_mailbox(s, address)
        assert box is not None
        return box.id


def release_fields(world: World, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "mailbox": str(mailbox_id(world, BOX)), "case": NEW_CASE,
        "data_subjects": "Lea Beispiel", "grantor_name": "Karl Beispiel",
        "grantor_role": "parent", "categories": ["Hilfeplan"], "partners": PARTNER,
        "addresses": "", "purpose": "Hilfeplanung", "valid_from": "2026-03-01",
        "valid_until": "2026-06-30", "note": "im Hausbesuch unterschrieben"}
    fields.update(changes)
    return fields


def error_of(html: str) -> str:
    """The refusal shown on the page (the form's error paragraph), or ""."""
    found = re.search(r'<p class="error" role="alert" id="form-error">(.*?)</p>', html, re.S)
    return found.group(1) if found else ""


def upload(data: bytes = b"", name: str = "entbindung.pdf",
           kind: str = "application/pdf") -> dict[str, tuple[str, bytes, str]]:
    return {"document": (name, data or small_pdf(), kind)}


@dataclass(frozen=True)
class Footprint:
    versions: int
    documents: int
    approvals: int
    audit: int
    states: tuple[str, ...]


def footprint(world: World) -> Footprint:
    with read_scope(world.services.sessions) as s:
        def count(model: type[Any]) -> int:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)
        # Logging in is audited too; what counts here is the register's own entries.
        consent_entries = int(s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action.like("consent-%") | AuditEntry.action.like("statutory-%")))
            or 0)
        return Footprint(count(ConsentVersion), count(ConsentDocument),
                         count(StatutoryApproval), consent_entries,
                         tuple(m.value for m in s.scalars(
                             select(Message.state).order_by(Message.id))))


def audit_trail(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    with read_scope(world.services.sessions) as s:
        assert audit.verify(s).ok
        return [(e.actor, e.action, e.details) for e in opened_audit(s, s.scalars(
            select(AuditEntry).order_by(AuditEntry.seq)))]


# --- rights ---------------------------------------------------------------------------------

# Every route: method, path (ids from World), what it sends. "mine"/"theirs" pick the ids.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/console/consent", "none"),
    ("GET", "/console/consent/new", "none"),
    ("POST", "/console/consent", "release"),
    ("GET", "/console/consent/check", "none"),
    ("POST", "/console/consent/check", "check"),
    ("GET", "/console/consent/held", "none"),
    ("POST", "/console/consent/held/{queue_id}/approve", "reason"),
    ("GET", "/console/consent/{release_id}", "none"),
    ("GET", "/console/consent/{release_id}/change", "none"),
    ("POST", "/console/consent/{release_id}/versions", "change"),
    ("POST", "/console/consent/{release_id}/revoke", "reason"),
    ("GET", "/console/consent/{release_id}/document", "none"),
    # Admins only: giving a release of no mailbox to one.
    ("POST", "/console/consent/{release_id}/mailbox", "assign"),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ROUTES]


def test_the_list_names_every_route_of_the_pages(world: World) -> None:
    from tests.test_web_ticket_rights import _api_routes

    app = create_app(world.services.settings)
    served = {(method, route.path) for route in _api_routes(app.routes)
              if route.path.startswith("/console/consent")
              for method in route.methods or ()}
    assert served == {(method, path) for method, path, _ in ROUTES}


def _request(client: TestClient, world: World, method: str, path: str, body: str,
             csrf: str | None, *, theirs: bool) -> int:
    url = path.format(release_id=world.theirs if theirs else world.mine,
                      queue_id=world.held_theirs if theirs else world.held_mine)
    if method == "GET":
        return int(client.get(url, follow_redirects=False).status_code)
    data: dict[str, Any] = {}
    files = None
    if body == "release":
        data = release_fields(world, mailbox=str(mailbox_id(world, OTHER_BOX if theirs
                                                          else BOX)))
        files = upload()
    elif body == "change":
        data = release_fields(world, case=THEIRS if theirs else MINE,
                              note="verlängert", valid_until="2026-04-30")
        data.pop("mailbox")
        files = upload()
    elif body == "check":
        data = {"case": MINE, "category": "Hilfeplan", "recipient": PARTNER_ADDRESS}
    elif body == "reason":
        data = {"reason": "Gefährdung akut"}
    elif body == "assign":
        data = {"mailbox": str(mailbox_id(world, OTHER_BOX if theirs else BOX))}
    if csrf is not None:
        data["csrf_token"] = csrf
    return int(client.post(url, data=data, files=files, follow_redirects=False).status_code)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
def test_rights_on_every_route(client: TestClient, world: World, method: str, path: str,
                               body: str) -> None:
    has_id = "{" in path
    before = footprint(world)
    # No login: to the login page, nothing changed.
    assert _request(client, world, method, path, body, None, theirs=False) == 303
    assert footprint(world) == before
    # The auditor and the DPO: the consent area is not theirs (403), nothing changed.
    for user in ("audi", "dora"):
        csrf = login(client, world, user)
        assert _request(client, world, method, path, body, csrf, theirs=False) == 403
        assert footprint(world) == before
    # A caseworker of another mailbox: every id of BOX is 404 and changes nothing; so is a
    # release recorded in no mailbox.
    csrf = login(client, world, "bert")
    if method == "POST":
        assert _request(client, world, method, path, body, None, theirs=True) == 403
        assert footprint(world) == before
    if has_id:
        before = footprint(world)
        assert _request(client, world, method, path, body, csrf, theirs=False) == 404
        assert footprint(world) == before
        if "release_id" in path:
            url = path.format(release_id=world.nobodys)
            assert _send(client, method, url, csrf) == 404
            assert _send(client, method, path.format(release_id=999999), csrf) == 404
            assert footprint(world) == before
        else:
            assert _send(client, method, path.format(queue_id="NOPE"), csrf) == 404
    # ... and their own work: allowed (only admins give releases to mailboxes: 403).
    allowed = (403,) if body == "assign" else (200, 303)
    assert _request(client, world, method, path, body, csrf, theirs=True) in allowed
    # The caseworker of BOX: their own ids are theirs.
    csrf = login(client, world, "anna")
    assert _request(client, world, method, path, body, csrf, theirs=False) in allowed
    # An admin of no mailbox: every release, also one of no mailbox.
    csrf = login(client, world, "root")
    if "release_id" in path and method == "GET":
        assert _send(client, method, path.format(release_id=world.nobodys), csrf) == 200
    if body == "assign":
        assigned = client.post(path.format(release_id=world.nobodys), data={
            "mailbox": str(mailbox_id(world, BOX)), "csrf_token": csrf},
            follow_redirects=False)
        assert assigned.status_code == 303


def _send(client: TestClient, method: str, url: str, csrf: str) -> int:
    if method == "GET":
        return int(client.get(url, follow_redirects=False).status_code)
    return int(client.post(url, data={"csrf_token": csrf, "reason": "x", "note": "x"},
                           follow_redirects=False).status_code)


def test_lists_show_only_the_users_mailboxes(client: TestClient, world: World) -> None:
    login(client, world, "anna")
    page = client.get("/console/consent").text
    assert MINE in page and THEIRS not in page and NOBODYS not in page
    held = client.get("/console/consent/held").text
    assert world.held_mine in held and world.held_theirs not in held
    login(client, world, "root")
    page = client.get("/console/consent").text
    assert MINE in page and THEIRS in page and NOBODYS in page
    held = client.get("/console/consent/held").text
    assert world.held_mine in held and world.held_theirs in held


def test_a_staff_user_of_no_mailbox_sees_nothing_and_records_nowhere(
        client: TestClient, world: World) -> None:
    with session_scope(world.services.sessions) as s:
        add_user(s, "neu", PASSWORD)
    csrf = login(client, world, "neu")
    page = client.get("/console/consent")
    assert page.status_code == 200 and 'id="no-mailbox"' in page.text and MINE not in page.text
    before = footprint(world)
    refused = client.post("/console/consent", data={**release_fields(world), "csrf_token": csrf},
                          files=upload())
    assert refused.status_code == 422 and "Sammelpostfach" in error_of(refused.text)
    assert footprint(world).versions == before.versions


# --- recording, changing, revoking ----------------------------------------------------------


def test_record_a_release_with_its_scan(client: TestClient, world: World) -> None:
    csrf = login(client, world, "anna")
    pdf = small_pdf()
    response = client.post("/console/consent", data={**release_fields(world), "csrf_token": csrf},
                           files=upload(pdf, name="Scan 2026.PDF", kind="text/plain"),
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    release_id = int(response.headers["location"].split("/")[-1].split("?")[0])
    page = client.get(response.headers["location"]).text
    assert "Lea Beispiel" in page and "Karl Beispiel" in page and NEW_CASE in page
    with read_scope(world.services.sessions) as s:
        release = s.get(ConsentRelease, release_id)
        assert release is not None and release.mailbox_id == mailbox_id(world, BOX)
        doc = s.scalars(select(ConsentDocument).order_by(ConsentDocument.id.desc())).first()
        assert doc is not None
        # The type is what the bytes are, not what the browser said; sealed, never in clear.
        assert (doc.content_type, doc.size, doc.filename) == ("application/pdf", len(pdf),
                                                               "Scan 2026.PDF")
        assert b"Schweigepflichtentbindung" not in doc.sealed
        doc_id = doc.id
    trail = audit_trail(world)
    added = [(actor, d) for actor, action, d in trail if action == "consent-added"]
    assert added[-1][0] == "anna" and added[-1][1]["mailbox"] == mailbox_id(world, BOX)
    assert ("anna", "consent-read") in [(a, b) for a, b, _ in trail]
    assert not any("Lea Beispiel" in json.dumps(d) for _, _, d in trail)

    # The download gives the same bytes back, as an attachment, and is on record.
    got = client.get(f"/console/consent/{release_id}/document?version=1")
    assert got.status_code == 200 and got.content == pdf
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["cache-control"] == "no-store"
    reads = [(a, d) for a, action, d in audit_trail(world) if action == "consent-document-read"]
    assert reads == [("anna", {"release": release_id, "version": 1, "document": doc_id})]
    assert client.get(f"/console/consent/{release_id}/document?version=7").status_code == 404


def test_change_and_revoke_make_new_versions(client: TestClient, world: World) -> None:
    csrf = login(client, world, "lena")
    form = client.get(f"/console/consent/{world.mine}/change")
    assert form.status_code == 200 and "Mia Muster" in form.text
    changed = client.post(f"/console/consent/{world.mine}/versions", data={
        **release_fields(world, case=MINE, data_subjects="Mia Muster",
                         valid_until="2026-05-31", note="verlängert bis Mai"),
        "expected_version": "1", "csrf_token": csrf}, files={"document": ("", b"", "")},
        follow_redirects=False)
    assert changed.status_code == 303, changed.text
    # Someone who looked at version 1 and changes it now is told it changed meanwhile.
    stale = client.post(f"/console/consent/{world.mine}/versions", data={
        **release_fields(world, case=MINE, note="nochmal"), "expected_version": "1",
        "csrf_token": csrf})
    assert stale.status_code == 409 and "inzwischen geändert" in error_of(stale.text)
    revoked = client.post(f"/console/consent/{world.mine}/revoke",
                          data={"reason": "Schreiben vom 9. März", "csrf_token": csrf},
                          follow_redirects=False)
    assert revoked.status_code == 303
    page = client.get(f"/console/consent/{world.mine}").text
    assert 'id="version-3"' in page and 'id="version-2"' in page and 'id="version-1"' in page
    assert "widerrufen" in page and 'id="revoke-form"' not in page
    # The scan of version 1 stays the scan of the later versions.
    assert client.get(f"/console/consent/{world.mine}/document").status_code == 200
    again = client.post(f"/console/consent/{world.mine}/revoke",
                        data={"reason": "doppelt", "csrf_token": csrf})
    assert again.status_code == 409 and "widerrufen" in error_of(again.text)
    actions = [(a, b) for a, b, _ in audit_trail(world)]
    assert ("lena", "consent-changed") in actions and ("lena", "consent-revoked") in actions
    with read_scope(world.services.sessions) as s:
        versions = s.scalars(select(ConsentVersion.version).where(
            ConsentVersion.release_id == world.mine).order_by(ConsentVersion.version)).all()
    assert list(versions) == [1, 2, 3]


BAD_INPUT = [
    ("not a PDF, named .pdf", {}, upload(b"Hallo, das ist Text.\n" * 5), "kein PDF"),
    ("malware behind %PDF-", {}, upload(b"%PDF-1.4\n" + EICAR), "Schadsoftware"),
    ("no scan", {}, {"document": ("", b"", "application/octet-stream")}, "Scan"),
    ("ends before it starts", {"valid_from": "2026-06-01", "valid_until": "2026-05-01"},
     upload(), "endet (2026-05-01), bevor er beginnt (2026-06-01)"),
    ("no date", {"valid_until": "31.12."}, upload(), "ist kein Datum"),
    ("unknown partner", {"partners": "Niemand GmbH"}, upload(), "Niemand GmbH"),
    ("no category", {"categories": []}, upload(), "mindestens eine Kategorie"),
    ("no case", {"case": "  "}, upload(), "Aktenzeichen fehlt"),
    ("another team's mailbox", {"mailbox": "OTHER"}, upload(), "Sammelpostfach"),
]


@pytest.mark.parametrize(("fields", "files", "message"),
                         [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_named_on_the_page_and_nothing_is_stored(
        client: TestClient, world: World, fields: dict[str, Any],
        files: dict[str, Any], message: str) -> None:
    csrf = login(client, world, "anna")
    if fields.get("mailbox") == "OTHER":
        fields = {**fields, "mailbox": str(mailbox_id(world, OTHER_BOX))}
    before = footprint(world)
    response = client.post("/console/consent",
                           data={**release_fields(world, **fields), "csrf_token": csrf},
                           files=files)
    assert response.status_code == 422, response.text
    assert message in error_of(response.text)
    # What was typed is still there.
    assert "Karl Beispiel" in response.text
    assert footprint(world) == before


def test_change_refusals_keep_the_release_as_it_was(client: TestClient, world: World) -> None:
    csrf = login(client, world, "anna")
    before = footprint(world)
    for fields, message in (({"note": ""}, "Grund der Änderung"),
                            ({"case": "51.2-9999/2026", "note": "x"}, "anderen Aktenzeichen"),
                            ({"valid_from": "2026-04-01", "valid_until": "2026-03-01",
                              "note": "x"}, "bevor er beginnt")):
        response = client.post(f"/console/consent/{world.mine}/versions", data={
            **release_fields(world, case=MINE, **{k: v for k, v in fields.items()
                                                   if k != "case"}),
            **({"case": fields["case"]} if "case" in fields else {}),
            "csrf_token": csrf}, files=upload())
        assert response.status_code == 422 and message in error_of(response.text)
    gif = client.post(f"/console/consent/{world.mine}/versions", data={
        **release_fields(world, case=MINE, note="neuer Scan"), "csrf_token": csrf},
        files=upload(b"GIF89a" + bytes(64), name="scan.pdf"))
    assert gif.status_code == 422 and "kein PDF" in error_of(gif.text)
    assert footprint(world) == before
    refused = client.post(f"/console/consent/{world.mine}/revoke",
                          data={"reason": " ", "csrf_token": csrf})
    assert refused.status_code == 422 and "Begründung" in error_of(refused.text)
    # The release page shown again with the reason is a reading of it, and only that.
    after = footprint(world)
    assert (after.versions, after.documents) == (before.versions, before.documents)
    assert [b for _, b, _ in audit_trail(world)][-1] == "consent-read"
    assert after.audit == before.audit + 1


def test_a_new_release_frees_the_held_report_of_its_case(client: TestClient,
                                                          world: World) -> None:
    waiting = held_report(world.services, BOX, NEW_CASE, auth_user="anna",
                          kind=HoldKind.CONSENT)
    csrf = login(client, world, "anna")
    assert waiting in client.get("/console/consent/held").text
    response = client.post("/console/consent", data={**release_fields(world), "csrf_token": csrf},
                           files=upload(), follow_redirects=False)
    assert response.status_code == 303
    with read_scope(world.services.sessions) as s:
        state = s.scalar(select(Message.state).where(Message.queue_id == waiting))
    assert state == MessageState.DEFERRED
    assert ("anna", "consent-recheck") in [(a, b) for a, b, _ in audit_trail(world)]


# --- search, dry run, held reports ----------------------------------------------------------


def test_search_by_case_person_and_state(client: TestClient, world: World) -> None:
    login(client, world, "root")
    by_person = client.get("/console/consent", params={"person": "max beisp"}).text
    assert THEIRS in by_person and MINE not in by_person
    by_case = client.get("/console/consent", params={"case": MINE}).text
    assert MINE in by_case and THEIRS not in by_case
    assert "gültig" in by_case
    unknown = client.get("/console/consent", params={"case": "51.2-0000/1999"}).text
    assert 'id="unknown-case"' in unknown and 'id="no-releases"' in unknown
    assert 'id="releases"' not in client.get("/console/consent",
                                             params={"state": "revoked"}).text
    # The name searched for is not in the audit trail; what was shown is.
    listed = [d for _, action, d in audit_trail(world) if action == "consent-listed"]
    assert listed and not any("max" in json.dumps(d).lower() for d in listed)
    assert listed[0]["by_person"] is True and listed[0]["via"] == "web"


def test_the_dry_run_answers_as_the_gate_does(client: TestClient, world: World) -> None:
    csrf = login(client, world, "anna")
    before = footprint(world)
    for case, on, heading in ((MINE, "", "Ja: der Bericht darf gehen."),
                              (MINE, "2026-04-02", "Nein"),
                              ("51.2-0000/1999", "", "Nein")):
        response = client.post("/console/consent/check", data={
            "case": case, "category": "Hilfeplan", "recipient": PARTNER_ADDRESS, "on": on,
            "csrf_token": csrf})
        assert response.status_code == 200 and heading in response.text, response.text
        with read_scope(world.services.sessions) as s:
            decision = dry_run(s, world.services.settings.consent, case=case,
                               category="Hilfeplan", recipient=PARTNER_ADDRESS,
                               on=date.fromisoformat(on) if on else None, now=NOW)
        for reason in decision.reasons:
            assert reason.replace('"', "&#34;").replace("'", "&#39;") in response.text
    assert 'id="unknown-case"' in response.text
    bad = client.post("/console/consent/check", data={
        "case": MINE, "category": "Hilfeplan", "recipient": PARTNER_ADDRESS, "on": "morgen",
        "csrf_token": csrf})
    assert bad.status_code == 422 and "kein Datum" in error_of(bad.text)
    # A dry run stores nothing.
    assert footprint(world) == before


def test_a_second_person_approves_a_transfer_on_a_legal_basis(client: TestClient,
                                                              world: World) -> None:
    # lena sent it: she may not approve it herself.
    csrf = login(client, world, "lena")
    before = footprint(world)
    refused = client.post(f"/console/consent/held/{world.held_mine}/approve",
                          data={"reason": "dringend", "csrf_token": csrf})
    assert refused.status_code == 422 and "selbst geschickt" in error_of(refused.text)
    assert footprint(world) == before
    # anna, of the same team, may; a reason is needed.
    csrf = login(client, world, "anna")
    blank = client.post(f"/console/consent/held/{world.held_mine}/approve",
                        data={"reason": "", "csrf_token": csrf})
    assert blank.status_code == 422 and "Begründung" in error_of(blank.text)
    approved = client.post(f"/console/consent/held/{world.held_mine}/approve",
                           data={"reason": "Gefährdung akut", "csrf_token": csrf},
                           follow_redirects=False)
    assert approved.status_code == 303
    with read_scope(world.services.sessions) as s:
        state = s.scalar(select(Message.state).where(Message.queue_id == world.held_mine))
    assert state == MessageState.DEFERRED
    assert ("anna", "statutory-approved") in [(a, b) for a, b, _ in audit_trail(world)]
    again = client.post(f"/console/consent/held/{world.held_mine}/approve",
                        data={"reason": "nochmal", "csrf_token": csrf})
    assert again.status_code == 409 and "wartet nicht" in error_of(again.text)


def test_pages_in_english(client: TestClient, world: World) -> None:
    login(client, world, "anna")
    page = client.get("/console/consent/new", headers={"accept-language": "en"})
    assert page.status_code == 200
    assert "Record a release from confidentiality" in page.text
    assert form_csrf(page.text)


def test_a_scan_over_the_limit_is_refused(world: World, clock: FakeClock) -> None:
    world.services.settings.consent.max_document_bytes = 1024
    with TestClient(create_app(world.services.settings, clock=clock), base_url=BASE_URL) as c:
        csrf = login(c, world, "anna")
        before = footprint(world)
        big = small_pdf("x" * 2000)
        over = c.post("/console/consent", data={**release_fields(world), "csrf_token": csrf},
                      files=upload(big))
        assert over.status_code == 422 and "größer als 1024 Bytes" in error_of(over.text)
        # Far beyond the form's bound: refused while it arrives, nothing parsed.
        far = c.post("/console/consent", data={**release_fields(world), "csrf_token": csrf},
                     files=upload(b"%PDF-1.4\n" + bytes(2 * 1024 * 1024)))
        assert far.status_code == 413
        assert footprint(world) == before


def test_an_admin_gives_a_release_of_no_mailbox_to_its_team(client: TestClient, world: World,
                                                            clock: FakeClock) -> None:
    login(client, world, "anna")
    assert client.get(f"/console/consent/{world.nobodys}").status_code == 404
    with TestClient(create_app(world.services.settings, clock=clock),
                    base_url=BASE_URL) as admin:
        csrf = login(admin, world, "root")
        page = admin.get(f"/console/consent/{world.nobodys}").text
        assert 'id="assign-form"' in page
        assert 'id="assign-form"' not in admin.get(f"/console/consent/{world.mine}").text
        assigned = admin.post(f"/console/consent/{world.nobodys}/mailbox", data={
            "mailbox": str(mailbox_id(world, BOX)), "csrf_token": csrf},
            follow_redirects=False)
        assert assigned.status_code == 303
        again = admin.post(f"/console/consent/{world.nobodys}/mailbox", data={
            "mailbox": str(mailbox_id(world, OTHER_BOX)), "csrf_token": csrf})
        assert again.status_code == 409 and "bereits" in error_of(again.text)
    assert ("root", "consent-assigned", {"release": world.nobodys,
                                         "mailbox": mailbox_id(world, BOX)}) in audit_trail(world)
    # The team sees it now.
    assert client.get(f"/console/consent/{world.nobodys}").status_code == 200
    assert NOBODYS in client.get("/console/consent").text
