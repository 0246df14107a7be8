"""A staff user in a real browser: enrolment of the second factor, login with password and
TOTP, a wrong code, logout; accessibility of the login and start pages (axe-core); the
screenshots for the README."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from gateway.db import session_scope
from gateway.staff import roles
from gateway.staff import users as staff
from tests.browser.conftest import WebApp, screenshot
from tests.support.db import opened

pytestmark = pytest.mark.browser

USER = "m.mueller"
PASSWORD = "ein sehr langes passwort"


@pytest.fixture
def caseworker(web_app: WebApp) -> str:
    with opened(web_app.settings) as sessions, session_scope(sessions) as session:
        staff.add_user(session, USER, PASSWORD)
        roles.grant(session, USER, roles.GlobalRole.DPO, actor="test")
    return USER


def _password(page: Page, app: WebApp, password: str = PASSWORD) -> None:
    page.goto(app.url + "/login")
    page.get_by_label("Benutzername").fill(USER)
    page.get_by_label("Passwort").fill(password)
    page.get_by_role("button", name="Anmelden").click()


def _code(secret: str, steps_ahead: int = 0) -> str:
    # One step ahead is within the accepted window: a code is accepted once, so a second
    # login inside the same 30 seconds uses the next one, as a phone would a moment later.
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


def test_enrol_log_in_with_totp_and_log_out(page: Page, web_app: WebApp,
                                            caseworker: str) -> None:
    page.goto(web_app.url + "/")
    expect(page).to_have_url(web_app.url + "/login")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    screenshot(page, "login")

    _password(page, web_app, "falsches passwort")
    expect(page.locator("#login-error")).to_have_text("Benutzername oder Passwort ist falsch.")

    _password(page, web_app)
    expect(page).to_have_url(web_app.url + "/login/enrol")
    expect(page.get_by_role("img", name="QR-Code zum Einrichten der Authenticator-App")
           ).to_be_visible()
    secret = page.locator("#totp-secret").inner_text()
    screenshot(page, "enrolment")
    page.get_by_label("Code aus der App").fill(_code(secret))
    page.get_by_role("button", name="Einrichtung abschließen").click()
    expect(page.get_by_role("heading", name="Wiederherstellungscodes")).to_be_visible()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    screenshot(page, "recovery-codes")
    page.get_by_role("link", name="Weiter zur Übersicht").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()
    expect(page.get_by_text(f"Guten Tag, {USER}.")).to_be_visible()
    expect(page.locator("#roles")).to_contain_text("Datenschutzbeauftragte(r)")

    # Chromium kept the Secure cookie from plain HTTP on loopback, as it should.
    cookie = next(c for c in page.context.cookies() if c["name"] == "xgate_session")
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")

    page.get_by_role("button", name="Abmelden", exact=True).click()
    expect(page.get_by_text("Sie sind abgemeldet.")).to_be_visible()
    page.goto(web_app.url + "/")
    expect(page).to_have_url(web_app.url + "/login")

    # Again, now with the second factor set up: a wrong code first.
    _password(page, web_app)
    expect(page).to_have_url(web_app.url + "/login/code")
    page.get_by_label("Code").fill("000000" if _code(secret, 1) != "000000" else "111111")
    page.get_by_role("button", name="Bestätigen").click()
    expect(page.locator("#code-error")).to_have_text("Der Code ist falsch oder abgelaufen.")
    page.get_by_label("Code").fill(_code(secret, 1))
    page.get_by_role("button", name="Bestätigen").click()
    expect(page).to_have_url(web_app.url + "/")
    screenshot(page, "start")

    page.get_by_role("button", name="Überall abmelden").click()
    expect(page.get_by_text("Sie sind auf allen Geräten abgemeldet.")).to_be_visible()


def test_language_switch(page: Page, web_app: WebApp) -> None:
    page.goto(web_app.url + "/login")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_role("link", name="Deutsch").click()
    expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()


def _serious(page: Page) -> list[str]:
    results = Axe().run(page)
    return [f"{v['id']}: {v['help']}" for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")]


def test_login_and_start_pages_pass_axe(page: Page, web_app: WebApp, caseworker: str) -> None:
    page.goto(web_app.url + "/login")
    assert _serious(page) == []
    _password(page, web_app)
    secret = page.locator("#totp-secret").inner_text()
    assert _serious(page) == []
    page.get_by_label("Code aus der App").fill(_code(secret))
    page.get_by_role("button", name="Einrichtung abschließen").click()
    page.get_by_role("link", name="Weiter zur Übersicht").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()
    assert _serious(page) == []
