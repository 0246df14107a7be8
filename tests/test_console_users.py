"""The console's users and roles pages over HTTP (TestClient, real SQLite and PostgreSQL, a
fake clock): the list with roles, memberships, state, second factor and last login; a new
user with a generated password shown once that logs in and must set up the second factor;
disabling, a new password and a second-factor reset each ending the user's sessions at once;
roles and memberships granted and taken; the last active admin kept; a taken name and other
bad input refused on the page with nothing stored; every change audited with the acting
admin; unknown and malformed ids 404; the CSRF token on every form."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select

from admin_ui.app import create_app
from gateway import audit
from gateway.audit.view import opened
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, StaffUser
from gateway.services import Services
from gateway.staff import roles, second_factor
from gateway.staff import users as staff
from gateway.staff.models import WebSession
from gateway.staff.roles import GlobalRole
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member, role_in
from mailboxes.models import MemberRole
from tests.support.staff_web import BASE_URL, add_tokens, bearer, enrol, form_csrf, web_login

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "ein sehr langes passwort"
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
CHEF = bearer("chef")
BOX = "asd@jugendamt.example"
NONE = "\N{EN DASH}"  # the list's mark for no mailbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def app(services: Services, clock: FakeClock) -> FastAPI:
    """chef (the only admin), sachb (a caseworker, agent in the ASD mailbox) and pruef (an
    auditor), each with an API token; a second mailbox nobody is in."""
    with session_scope(services.sessions) as session:
        staff.add_user(session, "chef", PASSWORD, admin=True)
        staff.add_user(session, "sachb", PASSWORD)
        staff.add_user(session, "pruef", PASSWORD)
        roles.grant(session, "pruef", GlobalRole.AUDITOR, actor="test")
        add_mailbox(session, BOX, "ASD")
        add_mailbox(session, "pflege@jugendamt.example", "Pflegekinderdienst")
        add_member(session, BOX, "sachb", MemberRole.AGENT, actor="test", now=clock())
    add_tokens(services.settings, "chef", "sachb", "pruef")
    return create_app(services.settings, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL) as c:
        yield c


def user_id(services: Services, name: str) -> int:
    with read_scope(services.sessions) as session:
        found = staff.find_user(session, name)
        assert found is not None
        return found.id


def trail(services: Services, after: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    with read_scope(services.sessions) as session:
        assert audit.verify(session).ok
        return [(e.actor, e.action, e.details) for e in opened(session, session.scalars(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)))]


def last_seq(services: Services) -> int:
    with read_scope(services.sessions) as session:
        return int(session.scalar(select(func.max(AuditEntry.seq))) or 0)


def counts(services: Services) -> tuple[int, int]:
    with read_scope(services.sessions) as session:
        return (int(session.scalar(select(func.count()).select_from(StaffUser)) or 0),
                int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0))


def sessions_of(services: Services, name: str) -> int:
    with read_scope(services.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(WebSession).where(
            WebSession.user_id == user_id(services, name))) or 0)


def shown_password(html: str) -> str:
    found = re.search(r'id="new-password"><strong>([a-z2-9-]+)</strong>', html)
    assert found, html
    return found.group(1)


def test_the_list_shows_roles_memberships_state_second_factor_and_last_login(
        client: TestClient, services: Services, clock: FakeClock) -> None:
    secret = enrol(services.settings, "sachb")
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    page = client.get("/console/users", headers=CHEF)
    assert page.status_code == 200
    rows = {name: row for name, row in re.findall(
        r'<tr id="user-\d+">\s*<td><a href="/console/users/\d+">([^<]+)</a></td>(.*?)</tr>',
        page.text, re.S)}
    assert list(rows) == ["chef", "pruef", "sachb"]
    cells = {name: [c.strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
             for name, row in rows.items()}
    assert cells["chef"] == ["Administration", NONE, "aktiv", "nicht eingerichtet", "noch nie"]
    assert cells["pruef"] == ["Revision", NONE, "aktiv", "nicht eingerichtet", "noch nie"]
    # 08:00 UTC in March is 09:00 in Berlin.
    assert cells["sachb"] == ["Sachbearbeitung", f"{BOX} (Mitarbeit)", "aktiv", "eingerichtet",
                              "10.03.2026 09:00"]
    assert "argon2" not in page.text
    english = client.get("/console/users", headers={**CHEF, "Accept-Language": "en"})
    assert "Users and roles" in english.text and "Caseworker" in english.text


def test_a_new_user_gets_a_password_shown_once_and_must_set_up_the_second_factor(
        client: TestClient, services: Services, app: FastAPI, clock: FakeClock) -> None:
    login = web_login(client, "chef", PASSWORD, enrol(services.settings, "chef"), at=clock())
    form = client.get("/console/users/new")
    assert form.status_code == 200 and 'name="csrf_token"' in form.text
    before = last_seq(services)
    made = client.post("/console/users/new", data={
        "csrf_token": form_csrf(form.text), "username": "dsb", "role": ["dpo", "auditor"],
        "mailbox": "", "mailbox_role": "agent"})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    password = shown_password(made.text)
    assert len(password) == 24 and login
    uid = user_id(services, "dsb")
    with read_scope(services.sessions) as session:
        found = staff.find_user(session, "dsb")
        assert found is not None and password not in found.password_hash
        assert roles.roles_of(session, uid, found.admin) == {GlobalRole.DPO,
                                                             GlobalRole.AUDITOR}
    assert trail(services, before) == [
        ("chef", "user-added", {"user": "dsb", "admin": False, "addresses": []}),
        ("chef", "role-granted", {"user": "dsb", "role": "dpo"}),
        ("chef", "role-granted", {"user": "dsb", "role": "auditor"}),
    ]
    assert password not in str(trail(services))
    # The new user's password works, and the login goes on to the second factor's set-up.
    # A second browser on the same app (its lifespan runs once, in ``client``).
    newcomer = TestClient(app, base_url=BASE_URL)
    page = newcomer.get("/login")
    answer = newcomer.post("/login", data={"username": "dsb", "password": password,
                                           "csrf_token": form_csrf(page.text)},
                           follow_redirects=False)
    assert answer.headers["location"] == "/login/enrol"
    assert newcomer.get("/login/enrol").status_code == 200
    assert newcomer.get("/", follow_redirects=False).headers["location"] == "/login/code"


def test_a_new_user_with_a_first_mailbox(client: TestClient, services: Services) -> None:
    pflege = _mailbox_id(services, "pflege@jugendamt.example")
    made = client.post("/console/users/new", headers=CHEF, data={
        "username": "lea", "mailbox": str(pflege), "mailbox_role": "lead"})
    assert made.status_code == 200
    with read_scope(services.sessions) as session:
        assert role_in(session, user_id(services, "lea"), pflege) is MemberRole.LEAD
    assert [a for _, a, _ in trail(services)][-2:] == ["user-added", "mailbox-member-added"]


def _mailbox_id(services: Services, address: str) -> int:
    from mailboxes.directory import find_mailbox
    with read_scope(services.sessions) as session:
        found = find_mailbox(session, address)
        assert found is not None
        return found.id


@pytest.mark.parametrize(("data", "message"), [
    ({"username": "sachb"}, "Diesen Benutzernamen gibt es schon."),
    ({"username": "zwei worte"}, "ohne Leerzeichen und Steuerzeichen"),
    ({"username": ""}, "Der Benutzername muss 1 bis 255 Zeichen lang sein"),
    ({"username": "x" * 256}, "Der Benutzername muss 1 bis 255 Zeichen lang sein"),
    ({"username": "neu", "role": "chef"}, "Diese Rolle gibt es nicht."),
    ({"username": "neu", "mailbox": "999"}, "Dieses Sammelpostfach gibt es nicht."),
    ({"username": "neu", "mailbox": "abc"}, "Dieses Sammelpostfach gibt es nicht."),
    ({"username": "neu", "mailbox": "1", "mailbox_role": "chef"},
     "Diese Rolle im Postfach gibt es nicht"),
])
def test_bad_input_for_a_new_user_is_named_and_nothing_is_stored(
        client: TestClient, services: Services, data: dict[str, str], message: str) -> None:
    before = counts(services)
    answer = client.post("/console/users/new", headers=CHEF, data=data)
    assert answer.status_code == 409
    assert message in answer.text and 'id="form-error"' in answer.text
    assert "new-password" not in answer.text
    assert counts(services) == before
    # What was typed is kept in the form.
    if data["username"] and len(data["username"]) < 50:
        assert f'value="{data["username"]}"' in answer.text


@pytest.mark.parametrize("change", ["disable", "password", "second-factor-reset"])
def test_disabling_a_new_password_or_a_second_factor_reset_ends_the_users_sessions(
        client: TestClient, services: Services, app: FastAPI, clock: FakeClock,
        change: str) -> None:
    secret = enrol(services.settings, "sachb")
    uid = user_id(services, "sachb")
    sachb = TestClient(app, base_url=BASE_URL)  # a second browser; the lifespan runs once
    web_login(sachb, "sachb", PASSWORD, secret, at=clock())
    assert sachb.get("/").status_code == 200 and sessions_of(services, "sachb") == 1
    before = last_seq(services)
    answer = client.post(f"/console/users/{uid}/{change}", headers=CHEF,
                         follow_redirects=False)
    assert sessions_of(services, "sachb") == 0
    assert sachb.get("/", follow_redirects=False).headers["location"] == "/login"
    action = {"disable": "user-disabled", "password": "user-password-changed",
              "second-factor-reset": "second-factor-reset"}[change]
    assert trail(services, before) == [("chef", action, {"user": "sachb"})]
    with read_scope(services.sessions) as session:
        user = session.get(StaffUser, uid)
        assert user is not None
        assert user.disabled is (change == "disable")
        assert second_factor.enrolled(session, uid) is (change != "second-factor-reset")
    if change == "password":
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        new = shown_password(answer.text)
        with read_scope(services.sessions) as session:
            assert staff.verify_password(session, "sachb", new) is not None
            assert staff.verify_password(session, "sachb", PASSWORD) is None
    else:
        assert answer.status_code == 303
        page = client.get(answer.headers["location"], headers=CHEF)
        assert 'id="done"' in page.text


def test_disable_and_enable(client: TestClient, services: Services) -> None:
    uid = user_id(services, "sachb")
    client.post(f"/console/users/{uid}/disable", headers=CHEF)
    page = client.get(f"/console/users/{uid}", headers=CHEF)
    assert '<dd id="state">gesperrt</dd>' in page.text and "Entsperren" in page.text
    assert client.get("/console/users", headers=bearer("sachb"),
                      follow_redirects=False).headers["location"] == "/login"
    client.post(f"/console/users/{uid}/enable", headers=CHEF)
    again = client.post(f"/console/users/{uid}/enable", headers=CHEF)
    assert "Es war nichts zu ändern." in again.text
    assert [a for _, a, _ in trail(services)][-2:] == ["user-disabled", "user-enabled"]


def test_the_last_active_admin_stays(client: TestClient, services: Services) -> None:
    chef = user_id(services, "chef")
    before = counts(services)
    for path, data in [("disable", {}), ("roles", {"role": "admin", "action": "revoke"})]:
        answer = client.post(f"/console/users/{chef}/{path}", headers=CHEF, data=data)
        assert answer.status_code == 409
        assert "Das ist die letzte aktive Administration." in answer.text
    assert counts(services) == before
    # With a second admin, chef may step down.
    client.post(f"/console/users/{user_id(services, 'pruef')}/roles", headers=CHEF,
                data={"role": "admin", "action": "grant"})
    answer = client.post(f"/console/users/{chef}/roles", headers=CHEF,
                         data={"role": "admin", "action": "revoke"}, follow_redirects=False)
    assert answer.status_code == 303
    assert [(actor, a, d) for actor, a, d in trail(services)][-2:] == [
        ("chef", "admin-granted", {"user": "pruef"}), ("chef", "admin-revoked", {"user": "chef"})]
    # No longer an admin: the users pages are closed to chef now.
    assert client.get("/console/users", headers=CHEF).status_code == 403


def test_roles_and_memberships_are_granted_and_taken(client: TestClient,
                                                     services: Services) -> None:
    uid = user_id(services, "sachb")
    pflege, asd = _mailbox_id(services, "pflege@jugendamt.example"), _mailbox_id(services, BOX)
    before = last_seq(services)
    steps = [
        ("roles", {"role": "dpo", "action": "grant"}, "Die Rolle wurde vergeben."),
        ("roles", {"role": "dpo", "action": "grant"}, "Es war nichts zu ändern."),
        ("roles", {"role": "dpo", "action": "revoke"}, "Die Rolle wurde entzogen."),
        ("mailboxes", {"mailbox": str(pflege), "role": "lead"},
         "Die Mitgliedschaft wurde gespeichert."),
        ("mailboxes", {"mailbox": str(asd), "role": "lead"},
         "Die Mitgliedschaft wurde gespeichert."),
        ("mailboxes", {"mailbox": str(pflege), "action": "remove"},
         "Der Benutzer wurde aus dem Postfach entfernt."),
    ]
    for path, data, notice in steps:
        page = client.post(f"/console/users/{uid}/{path}", headers=CHEF, data=data)
        assert page.status_code == 200 and notice in page.text, (path, data)
    assert trail(services, before) == [
        ("chef", "role-granted", {"user": "sachb", "role": "dpo"}),
        ("chef", "role-revoked", {"user": "sachb", "role": "dpo"}),
        ("chef", "mailbox-member-added", {"mailbox": "pflege@jugendamt.example",
                                          "user": "sachb", "role": "lead",
                                          "previous_role": None}),
        ("chef", "mailbox-member-added", {"mailbox": BOX, "user": "sachb", "role": "lead",
                                          "previous_role": "agent"}),
        ("chef", "mailbox-member-removed", {"mailbox": "pflege@jugendamt.example",
                                            "user": "sachb"}),
    ]
    with read_scope(services.sessions) as session:
        assert role_in(session, uid, asd) is MemberRole.LEAD
        assert role_in(session, uid, pflege) is None
    before_counts = counts(services)
    for data in [{"role": "chef", "action": "grant"}, {"role": "", "action": "revoke"}]:
        answer = client.post(f"/console/users/{uid}/roles", headers=CHEF, data=data)
        assert answer.status_code == 409 and "Diese Rolle gibt es nicht." in answer.text
    for data in [{"mailbox": "999", "role": "lead"}, {"mailbox": "", "action": "remove"},
                 {"mailbox": str(asd), "role": "boss"}]:
        answer = client.post(f"/console/users/{uid}/mailboxes", headers=CHEF, data=data)
        assert answer.status_code == 409 and 'id="form-error"' in answer.text
    assert counts(services) == before_counts


def test_sender_addresses_are_allowed_and_taken_away(client: TestClient,
                                                     services: Services) -> None:
    """As ``xgate user address``: the envelope senders for SMTP submission."""
    uid = user_id(services, "sachb")
    before = last_seq(services)
    for data, notice in [
            ({"address": "SB@Jugendamt.example"}, "Die Absenderadresse ist erlaubt."),
            ({"address": "sb@jugendamt.example"}, "Es war nichts zu ändern."),
            ({"address": "asd@jugendamt.example"}, "Die Absenderadresse ist erlaubt."),
            ({"address": "sb@jugendamt.example", "action": "remove"},
             "Die Absenderadresse ist entzogen.")]:
        page = client.post(f"/console/users/{uid}/addresses", headers=CHEF, data=data)
        assert page.status_code == 200 and notice in page.text, data
    assert re.findall(r'name="address" value="([^"]+)"', page.text) == ["asd@jugendamt.example"]
    with read_scope(services.sessions) as session:
        assert staff.sender_addresses(session, "sachb") == {"asd@jugendamt.example"}
    assert trail(services, before) == [
        ("chef", "user-address-added", {"user": "sachb", "address": "sb@jugendamt.example"}),
        ("chef", "user-address-added", {"user": "sachb", "address": "asd@jugendamt.example"}),
        ("chef", "user-address-removed", {"user": "sachb", "address": "sb@jugendamt.example"}),
    ]
    before_counts = counts(services)
    for bad in ["keine adresse", "", "a@b", "zwei@x.example extra"]:
        answer = client.post(f"/console/users/{uid}/addresses", headers=CHEF,
                             data={"address": bad})
        assert answer.status_code == 409, bad
        assert "Das ist keine gültige E-Mail-Adresse." in answer.text
    assert counts(services) == before_counts


def test_an_api_token_is_shown_once_works_and_is_revoked(client: TestClient,
                                                         services: Services) -> None:
    """As ``xgate user token``: made for a user, shown once, working until revoked."""
    uid = user_id(services, "pruef")
    before = last_seq(services)
    made = client.post(f"/console/users/{uid}/tokens", headers=CHEF, data={"name": "Skript"})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    found = re.search(r'id="new-token"><strong>(xg_[^<]+)</strong>', made.text)
    assert found
    token = {"Authorization": f"Bearer {found.group(1)}"}
    assert client.get("/console/transfers", headers=token).status_code == 200
    page = client.get(f"/console/users/{uid}", headers=CHEF)
    assert found.group(1) not in page.text and "Skript" in page.text
    token_id = re.findall(r'name="token" value="(\d+)"', page.text)[-1]
    revoked = client.post(f"/console/users/{uid}/tokens/revoke", headers=CHEF,
                          data={"token": token_id})
    assert "Das Token ist widerrufen." in revoked.text
    assert client.get("/console/transfers", headers=token,
                      follow_redirects=False).headers["location"] == "/login"
    assert [(a, d) for _, a, d in trail(services, before)] == [
        ("api-token-created", {"user": "pruef", "token": int(token_id), "name": "Skript"}),
        ("api-token-revoked", {"user": "pruef", "token": int(token_id)}),
    ]
    before_counts = counts(services)
    for path, data, message in [
            ("tokens", {"name": ""}, "Der Name des Tokens muss 1 bis 100"),
            ("tokens", {"name": "x" * 101}, "Der Name des Tokens muss 1 bis 100"),
            # Another user's token answers like one that does not exist.
            ("tokens/revoke", {"token": re.findall(r"\d+", str(
                _token_of(services, "chef")))[0]}, "Dieses Token gibt es bei diesem Benutzer"),
            ("tokens/revoke", {"token": "abc"}, "Dieses Token gibt es bei diesem Benutzer")]:
        answer = client.post(f"/console/users/{uid}/{path}", headers=CHEF, data=data)
        assert answer.status_code == 409 and message in answer.text, data
    assert counts(services) == before_counts
    assert client.get("/console/users", headers=CHEF).status_code == 200  # chef's still works


def _token_of(services: Services, name: str) -> int:
    from gateway.staff.tokens import list_tokens
    with read_scope(services.sessions) as session:
        return list_tokens(session, name)[0].id


@pytest.mark.parametrize("path", ["", "/disable", "/enable", "/password",
                                  "/second-factor-reset", "/roles", "/mailboxes", "/addresses",
                                  "/tokens", "/tokens/revoke"])
def test_unknown_and_malformed_user_ids_are_404(client: TestClient, services: Services,
                                                path: str) -> None:
    before = counts(services)
    method = "GET" if not path else "POST"
    for bad in ["999999", "abc", "-1", "1" * 16, "%C2%B2"]:
        answer = client.request(method, f"/console/users/{bad}{path}", headers=CHEF,
                                data={"role": "dpo", "action": "grant", "mailbox": "1"})
        assert answer.status_code == 404, (bad, path)
    assert counts(services) == before


def test_every_form_needs_the_csrf_token(client: TestClient, services: Services,
                                        clock: FakeClock) -> None:
    web_login(client, "chef", PASSWORD, enrol(services.settings, "chef"), at=clock())
    uid = user_id(services, "sachb")
    page = client.get(f"/console/users/{uid}")
    forms = re.findall(r'<form method="post" action="([^"]+)"', page.text)
    assert {f"/console/users/{uid}/{p}" for p in (
        "disable", "password", "second-factor-reset", "roles", "mailboxes", "addresses",
        "tokens")} <= set(forms)
    assert page.text.count('name="csrf_token"') == len(forms)
    before = counts(services)
    for action in forms:
        if action.startswith("/logout"):
            continue
        assert client.post(action, data={"role": "dpo", "mailbox": "1"}).status_code == 403
    assert client.post("/console/users/new", data={"username": "x"}).status_code == 403
    assert counts(services) == before


@pytest.mark.parametrize("who", ["sachb", "pruef"])
def test_only_admins_open_the_users_pages(client: TestClient, services: Services,
                                          who: str) -> None:
    uid = user_id(services, "sachb")
    before = counts(services)
    for method, path in [("GET", "/console/users"), ("GET", "/console/users/new"),
                         ("POST", "/console/users/new"), ("GET", f"/console/users/{uid}"),
                         ("POST", f"/console/users/{uid}/disable"),
                         ("POST", f"/console/users/{uid}/roles")]:
        answer = client.request(method, path, headers=bearer(who),
                                data={"username": "x", "role": "admin", "action": "grant"})
        assert answer.status_code == 403, (method, path)
    assert counts(services) == before


# --- a user's own password ----------------------------------------------------------------------


def test_a_user_changes_their_own_password_and_logs_in_again(
        client: TestClient, services: Services, clock: FakeClock) -> None:
    secret = enrol(services.settings, "sachb")
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    home = client.get("/")
    assert 'href="/account/password"' in home.text
    page = client.get("/account/password")
    token = form_csrf(page.text)
    before = last_seq(services)
    new = "mein eigenes neues passwort"
    refusals = [
        ({"current": PASSWORD, "new": new, "again": new + "x"},
         "Die beiden neuen Passwörter stimmen nicht überein."),
        ({"current": PASSWORD, "new": PASSWORD, "again": PASSWORD},
         "Das neue Passwort ist das bisherige."),
        ({"current": "falsches passwort", "new": new, "again": new},
         "Das bisherige Passwort ist falsch."),
        ({"current": PASSWORD, "new": "kurz", "again": "kurz"}, "Mindestens 12 Zeichen."),
    ]
    for data, message in refusals:
        answer = client.post("/account/password", data={**data, "csrf_token": token})
        assert answer.status_code == 409 and message in answer.text, message
    assert trail(services, before) == []
    with read_scope(services.sessions) as session:
        assert staff.verify_password(session, "sachb", PASSWORD) is not None
    # Without the form's token: refused before anything is looked at.
    assert client.post("/account/password", data={
        "current": PASSWORD, "new": new, "again": new}).status_code == 403

    changed = client.post("/account/password", data={
        "current": PASSWORD, "new": new, "again": new, "csrf_token": token})
    assert changed.status_code == 200 and 'id="changed"' in changed.text
    assert trail(services, before) == [("sachb", "user-password-changed", {"user": "sachb"})]
    assert sessions_of(services, "sachb") == 0
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    clock.advance(30)  # the next TOTP code: each is accepted once
    web_login(client, "sachb", new, secret, at=clock())


def test_a_wrong_current_password_counts_against_the_login_throttle(
        client: TestClient, services: Services, clock: FakeClock) -> None:
    web_login(client, "sachb", PASSWORD, enrol(services.settings, "sachb"), at=clock())
    token = form_csrf(client.get("/account/password").text)
    statuses = [client.post("/account/password", data={
        "current": f"geraten {n:02d} und falsch", "new": "ein ganz neues passwort",
        "again": "ein ganz neues passwort", "csrf_token": token}).status_code
        for n in range(services.settings.login.free_failures_per_user + 1)]
    assert statuses[-1] == 429 and set(statuses[:-1]) == {409}
    with read_scope(services.sessions) as session:
        assert staff.verify_password(session, "sachb", PASSWORD) is not None


# --- the list's cost ------------------------------------------------------------------------------


@contextmanager
def counted() -> Iterator[list[str]]:
    """The statements the request runs: those of the app's worker threads, not of a
    background job another test's app may still be finishing."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name.startswith("AnyIO worker thread"):
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def test_the_list_costs_the_same_statements_for_three_users_or_forty(
        app: FastAPI, services: Services, clock: FakeClock) -> None:
    # No lifespan: the background watches would add their own statements.
    client = TestClient(app, base_url=BASE_URL)

    def statements() -> int:
        with counted() as seen:
            assert client.get("/console/users", headers=CHEF).status_code == 200
        return len(seen)

    statements()  # the first request also notes the API token's first use (an UPDATE)
    few = statements()
    with session_scope(services.sessions) as session:
        for n in range(37):
            staff.add_user(session, f"kollegin{n:02d}", PASSWORD)
            roles.grant(session, f"kollegin{n:02d}", GlobalRole.DPO, actor="test")
            add_member(session, BOX, f"kollegin{n:02d}", MemberRole.AGENT, actor="test",
                       now=clock())
    page = client.get("/console/users", headers=CHEF)
    assert page.text.count('<tr id="user-') == 40
    assert statements() == few
