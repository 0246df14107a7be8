"""The staff web app's security at the HTTP level, with FastAPI's TestClient on real SQLite and
PostgreSQL databases and a fake clock: CSRF, session fixation, the idle and absolute
timeouts, the shared login throttle (web login and API) without revealing which users exist,
the second factor (required, replay, recovery codes), the security headers on every kind of
answer, error pages and the language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from admin_ui.app import create_app
from gateway.audit.view import all_entries
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.settings import Settings
from gateway.staff import actions as staff_actions
from gateway.staff import housekeeping, roles
from gateway.staff import users as staff
from gateway.staff.models import LoginFailure, WebSession
from gateway.web.headers import CONTENT_SECURITY_POLICY
from tests.support.db import opened
from tests.support.staff_web import (
    BASE_URL,
    add_tokens,
    bearer,
    enrol,
    form_csrf,
    totp_code,
    web_login,
)

# Argon2 at production cost takes 0.3 s a hash; these tests are about who gets in.
pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "ein sehr langes passwort"
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def secret(settings: Settings) -> str:
    """Staff user sachb (an auditor) with a second factor; its TOTP secret."""
    with opened(settings) as sessions, session_scope(sessions) as session:
        staff.add_user(session, "sachb", PASSWORD)
        staff.add_user(session, "neu", PASSWORD)
        roles.grant(session, "sachb", roles.GlobalRole.AUDITOR, actor="test")
    add_tokens(settings, "sachb")
    return enrol(settings, "sachb")


@pytest.fixture
def client(settings: Settings, clock: FakeClock, secret: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), base_url=BASE_URL) as test_client:
        yield test_client


def _password(client: TestClient, username: str, password: str = PASSWORD) -> Response:
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": form_csrf(page.text)},
                       follow_redirects=False)


# --- the login --------------------------------------------------------------------------------


def test_login_with_password_and_totp_reaches_the_start_page(client: TestClient,
                                                             secret: str,
                                                             clock: FakeClock) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    page = client.get("/")
    assert page.status_code == 200
    assert "Guten Tag, sachb." in page.text and "Revision" in page.text


def test_the_password_alone_reaches_nothing(client: TestClient) -> None:
    response = _password(client, "sachb")
    assert response.headers["location"] == "/login/code"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login/code"
    # Nor the API with the half-done session's cookie.
    assert client.get("/api/v1/consents").status_code == 401


def test_a_totp_code_counts_once(client: TestClient, secret: str, clock: FakeClock) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    second = TestClient(client.app, base_url=BASE_URL)
    _password(second, "sachb")
    page = second.get("/login/code")
    replay = second.post("/login/code", data={"code": totp_code(secret, clock()),
                                              "csrf_token": form_csrf(page.text)},
                         follow_redirects=False)
    assert replay.status_code == 401
    assert "Der Code ist falsch oder abgelaufen." in replay.text
    clock.advance(30)
    fresh = second.post("/login/code", data={"code": totp_code(secret, clock()),
                                             "csrf_token": form_csrf(page.text)},
                        follow_redirects=False)
    assert fresh.status_code == 303 and fresh.headers["location"] == "/"


def test_a_recovery_code_works_once(client: TestClient, settings: Settings,
                                    clock: FakeClock) -> None:
    # Enrolment through the pages gives the codes.
    _password(client, "neu")
    page = client.get("/login/enrol")
    shown = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert shown
    done = client.post("/login/enrol", data={"code": totp_code(shown.group(1), clock()),
                                             "csrf_token": form_csrf(page.text)})
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", done.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    for attempt, expected in ((codes[3], 303), (codes[3], 401)):
        browser = TestClient(client.app, base_url=BASE_URL)
        _password(browser, "neu")
        page = browser.get("/login/code")
        response = browser.post("/login/code", data={"code": attempt,
                                                     "csrf_token": form_csrf(page.text)},
                                follow_redirects=False)
        assert response.status_code == expected


def test_a_user_without_2fa_must_enrol_first(client: TestClient) -> None:
    response = _password(client, "neu")
    assert response.headers["location"] == "/login/enrol"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login/code"
    assert client.get("/login/code", follow_redirects=False).headers["location"] == (
        "/login/enrol")
    assert client.post("/logout/everywhere", follow_redirects=False).status_code == 303
    page = client.get("/login/enrol")
    assert page.status_code == 200 and 'src="data:image/svg+xml' in page.text


# --- CSRF -------------------------------------------------------------------------------------


def test_csrf_missing_or_wrong_is_403(client: TestClient, secret: str,
                                      clock: FakeClock) -> None:
    token = web_login(client, "sachb", PASSWORD, secret, at=clock())
    for data in ({}, {"csrf_token": "falsch"}):
        page = client.post("/logout/everywhere", data=data)
        assert page.status_code == 403
        assert "CSRF" in page.text
        api = client.post("/api/v1/consents/check", json={}, headers={
            "X-CSRF-Token": data["csrf_token"]} if data else {})
        assert api.status_code == 403
        assert api.json()["error"] == "csrf"
    # With the token both pass the check.
    assert client.post("/api/v1/consents/check", json={},
                       headers={"X-CSRF-Token": token}).status_code == 422
    assert client.get("/").status_code == 200
    # An API token is no cookie: no CSRF token needed.
    assert TestClient(client.app).post("/api/v1/consents/check", json={},
                                       headers=bearer("sachb")).status_code == 422


def test_the_login_form_needs_its_csrf_cookie(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "sachb", "password": PASSWORD,
                                           "csrf_token": "ausgedacht"})
    assert response.status_code == 403 and "CSRF" in response.text


# --- sessions ---------------------------------------------------------------------------------


def test_a_session_id_set_before_the_login_is_not_the_one_after(client: TestClient,
                                                                secret: str,
                                                                clock: FakeClock) -> None:
    client.cookies.set("xgate_session", "vom-angreifer-gesetzt", domain="testserver.local")
    _password(client, "sachb")
    after_password = client.cookies.get("xgate_session")
    assert after_password and after_password != "vom-angreifer-gesetzt"
    page = client.get("/login/code")
    client.post("/login/code", data={"code": totp_code(secret, clock()),
                                     "csrf_token": form_csrf(page.text)})
    after_code = client.cookies.get("xgate_session")
    assert after_code not in (after_password, "vom-angreifer-gesetzt")
    # The token known after the password alone no longer works.
    stale = TestClient(client.app, base_url=BASE_URL)
    stale.cookies.set("xgate_session", after_password, domain="testserver.local")
    assert stale.get("/", follow_redirects=False).headers["location"] == "/login"


def test_the_session_cookie_is_secure_httponly_strict(client: TestClient) -> None:
    response = _password(client, "sachb")
    cookie = response.headers["set-cookie"].lower()
    for part in ("xgate_session=", "secure", "httponly", "samesite=strict", "path=/"):
        assert part in cookie


def test_idle_timeout(client: TestClient, secret: str, clock: FakeClock,
                      settings: Settings) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    idle = settings.web.session_idle_minutes * 60
    clock.advance(idle - 60)
    assert client.get("/").status_code == 200
    clock.advance(idle - 60)
    assert client.get("/").status_code == 200
    clock.advance(idle + 1)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_absolute_timeout(client: TestClient, secret: str, clock: FakeClock,
                          settings: Settings) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    step = (settings.web.session_idle_minutes - 5) * 60
    limit = settings.web.session_absolute_hours * 3600
    while clock() + timedelta(seconds=step) < START + timedelta(seconds=limit):
        clock.advance(step)
        assert client.get("/").status_code == 200
    clock.advance(step + 1)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_logout_and_logout_everywhere(client: TestClient, secret: str, clock: FakeClock) -> None:
    token = web_login(client, "sachb", PASSWORD, secret, at=clock())
    other = TestClient(client.app, base_url=BASE_URL)
    clock.advance(30)
    other_token = web_login(other, "sachb", PASSWORD, secret, at=clock())
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.headers["location"] == "/login?info=logged_out"
    assert client.get("/", follow_redirects=False).status_code == 303
    assert other.get("/").status_code == 200
    clock.advance(30)
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    everywhere = other.post("/logout/everywhere", data={"csrf_token": other_token})
    assert "auf allen Geräten abgemeldet" in everywhere.text
    for browser in (client, other):
        assert browser.get("/", follow_redirects=False).headers["location"] == "/login"


def _trail(settings: Settings, *actions: str) -> list[tuple[str, str, dict[str, object]]]:
    with opened(settings) as sessions, session_scope(sessions) as session:
        return [(e.actor, e.action, e.details) for e in all_entries(session)
                if e.action in actions]


def test_logins_and_logouts_are_in_the_audit_trail(client: TestClient, settings: Settings,
                                                   secret: str, clock: FakeClock) -> None:
    token = web_login(client, "sachb", PASSWORD, secret, at=clock())
    client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    clock.advance(30)
    token = web_login(client, "sachb", PASSWORD, secret, at=clock())
    client.post("/logout/everywhere", data={"csrf_token": token})
    _password(client, "sachb", "falsch falsch falsch")
    assert _trail(settings, "web-login", "web-logout", "web-logout-everywhere") == [
        ("sachb", "web-login", {"via": "totp", "address": "testclient"}),
        ("sachb", "web-logout", {}),
        ("sachb", "web-login", {"via": "totp", "address": "testclient"}),
        ("sachb", "web-logout-everywhere", {"sessions": 1}),
    ]


@pytest.mark.parametrize("change", ["password", "disable"])
def test_a_new_password_or_disabling_ends_the_users_sessions(
        client: TestClient, settings: Settings, secret: str, clock: FakeClock,
        change: str) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    assert client.get("/").status_code == 200
    with opened(settings) as sessions, session_scope(sessions) as session:
        if change == "password":
            staff_actions.change_password(session, "sachb", "ein anderes langes passwort",
                                          actor="operator:test")
        else:
            staff_actions.set_disabled(session, "sachb", True, actor="operator:test")
        left = session.scalar(select(func.count()).select_from(WebSession))
    assert left == 0
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_housekeeping_forgets_expired_sessions_and_quiet_counters(
        client: TestClient, settings: Settings, secret: str, clock: FakeClock) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    _password(client, "neu", "falsch falsch falsch")
    with opened(settings) as sessions, session_scope(sessions) as session:
        assert housekeeping.sweep(session, settings, clock) == (0, 0)
    clock.advance(settings.web.session_idle_minutes * 60 + 1)
    with opened(settings) as sessions, session_scope(sessions) as session:
        assert housekeeping.sweep(session, settings, clock) == (1, 0)
    clock.advance(settings.login.max_lockout_seconds * 2)
    with opened(settings) as sessions, session_scope(sessions) as session:
        # The failure counted the name and the client's address.
        assert housekeeping.sweep(session, settings, clock) == (0, 2)
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0


# --- throttle ---------------------------------------------------------------------------------


def test_web_login_is_throttled_the_same_for_unknown_users(client: TestClient,
                                                          settings: Settings) -> None:
    free = settings.login.free_failures_per_user
    answers = {}
    for name in ("sachb", "niemand"):
        codes = [_password(client, name, "falsch").status_code
                 for _ in range(free)]
        assert codes == [401] * free
        locked = _password(client, name, PASSWORD)
        assert locked.status_code == 429
        # The page differs only in the name typed and the form's fresh CSRF token.
        text = locked.text
        answers[name] = text.replace(name, "NAME").replace(form_csrf(text), "TOKEN")
    assert "Zu viele Fehlversuche" in answers["sachb"]
    assert answers["sachb"] == answers["niemand"]


def test_the_lockout_ends(client: TestClient, settings: Settings, clock: FakeClock) -> None:
    for _ in range(settings.login.free_failures_per_user):
        _password(client, "sachb", "falsch")
    assert _password(client, "sachb").status_code == 429
    clock.advance(settings.login.lockout_seconds + 1)
    assert _password(client, "sachb").status_code == 303


def test_wrong_api_tokens_are_throttled_per_address(client: TestClient,
                                                    settings: Settings) -> None:
    api = TestClient(client.app)
    free = settings.login.free_failures_per_address
    codes = [api.get("/api/v1/consents", headers={"Authorization": f"Bearer xg_{i}"}
                     ).status_code for i in range(free)]
    assert codes == [401] * free
    locked = api.get("/api/v1/consents", headers=bearer("sachb"))
    assert locked.status_code == 429
    assert locked.json()["error"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0


# --- headers, errors, language ----------------------------------------------------------------


def test_security_headers_on_every_kind_of_answer(client: TestClient, secret: str,
                                                  clock: FakeClock) -> None:
    web_login(client, "sachb", PASSWORD, secret, at=clock())
    answers = [client.get(path) for path in ("/", "/login", "/nope", "/static/app.css",
                                             "/healthz", "/api/v1/keys")]
    answers.append(TestClient(client.app).get("/api/v1/consents"))
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 200, 403, 401]
    for answer in answers:
        headers = answer.headers
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        expected = "no-cache" if answer.url.path.startswith("/static/") else "no-store"
        assert headers["Cache-Control"] == expected
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY


def test_error_pages_are_html_in_the_users_language(client: TestClient) -> None:
    missing = client.get("/gibt-es-nicht")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert '<html lang="de">' in missing.text and "Diese Seite gibt es nicht." in missing.text
    english = client.get("/gibt-es-nicht", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english.text and "There is no such page." in english.text
    too_large = client.post("/logout", content=b"x" * 100_000,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert too_large.status_code == 413 and "Die Anfrage ist zu groß." in too_large.text
    assert "Traceback" not in missing.text + too_large.text
    # The API answers in JSON, as before.
    assert client.get("/api/v1/nope").json()["error"] == "not_found"


def test_the_language_switch_beats_the_browser(client: TestClient) -> None:
    switched = client.get("/language?lang=en&back=/login", follow_redirects=False)
    assert switched.headers["location"] == "/login"
    assert "Log in with your user name and password." in client.get("/login").text
    # Never a redirect off the site.
    for back in ("//evil.example/", "https://evil.example/"):
        assert client.get(f"/language?lang=de&back={back}",
                          follow_redirects=False).headers["location"] == "/"
    assert "Melden Sie sich" in client.get(
        "/login", headers={"Accept-Language": "en"}).text


def test_identity_is_checked_before_the_body_is_read(client: TestClient) -> None:
    api = TestClient(client.app)
    # Larger than the key router's limit, and not JSON: a 401, not a 413 or 422.
    huge = b"{" * (3 * 1024 * 1024)
    for headers in ({}, {"Authorization": "Bearer xg_falsch"}):
        response = api.post("/api/v1/keys", content=huge,
                            headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 401, response.text
    # Logged in, the same body is refused for its size.
    response = api.post("/api/v1/keys", content=huge,
                        headers={"Content-Type": "application/json", **bearer("sachb")})
    assert response.status_code == 413
