"""An admin creates a user with a role in a real browser (Debian's chromium through
Playwright, the real web app under uvicorn, SQLite), and the new user logs in with the
generated password, sets up the second factor and sees what the role opens and what it does
not: the navigation shows only their areas, and the users page by its address is the 403
page. axe-core on the users pages. Screenshot console-users (the list with the new user)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from playwright.sync_api import Page, expect

from gateway.db import session_scope
from gateway.staff import users as staff
from tests.browser.conftest import WebApp, screenshot
from tests.browser.pages import no_serious_violations
from tests.support.db import opened
from tests.support.staff_web import enrol

pytestmark = pytest.mark.browser

ADMIN = "chef"
PASSWORD = "ein sehr langes passwort"


@pytest.fixture
def admin_secret(web_app: WebApp) -> str:
    with opened(web_app.settings) as sessions, session_scope(sessions) as session:
        staff.add_user(session, ADMIN, PASSWORD, admin=True)
    return enrol(web_app.settings, ADMIN)


def log_in(page: Page, app: WebApp, user: str, password: str) -> None:
    page.goto(app.url + "/login")
    page.get_by_label("Benutzername").fill(user)
    page.get_by_label("Passwort").fill(password)
    page.get_by_role("button", name="Anmelden").click()


def code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


def nav_links(page: Page) -> list[str]:
    return [t.strip() for t in page.get_by_role(
        "navigation", name="Hauptnavigation").get_by_role("link").all_inner_texts()]


def test_an_admin_creates_an_auditor_who_sees_only_their_areas(
        page: Page, web_app: WebApp, admin_secret: str) -> None:
    log_in(page, web_app, ADMIN, PASSWORD)
    page.get_by_label("Code").fill(code(admin_secret))
    page.get_by_role("button", name="Bestätigen").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()
    assert "Benutzer" in nav_links(page)

    page.get_by_role("link", name="Benutzer", exact=True).click()
    expect(page.get_by_role("heading", name="Benutzer und Rollen")).to_be_visible()
    page.get_by_role("link", name="Neuen Benutzer anlegen").click()
    no_serious_violations(page)
    page.get_by_label("Benutzername").fill("revision")
    page.get_by_label("Revision").check()
    page.get_by_role("button", name="Benutzer anlegen").click()
    expect(page.get_by_role("heading", name="Neues Passwort")).to_be_visible()
    password = page.locator("#new-password").inner_text().strip()
    assert re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){4}", password)

    page.get_by_role("link", name="Weiter zu revision").click()
    expect(page.locator("#second-factor")).to_have_text("nicht eingerichtet")
    no_serious_violations(page)
    page.get_by_role("link", name="Zurück zur Benutzerliste").click()
    row = page.locator("#users tr", has_text="revision")
    expect(row).to_contain_text("Revision")
    expect(row).to_contain_text("noch nie")
    no_serious_violations(page)
    screenshot(page, "console-users")
    page.get_by_role("button", name="Abmelden", exact=True).click()

    # The new user: the generated password, then the second factor's set-up is the only way on.
    log_in(page, web_app, "revision", password)
    expect(page).to_have_url(web_app.url + "/login/enrol")
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code aus der App").fill(code(secret))
    page.get_by_role("button", name="Einrichtung abschließen").click()
    expect(page.get_by_role("heading", name="Wiederherstellungscodes")).to_be_visible()
    page.get_by_role("link", name="Weiter zur Übersicht").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()
    # An auditor's areas and nothing else.
    assert nav_links(page) == ["Übersicht", "Übermittlungen", "Prüfprotokoll"]
    page.get_by_role("link", name="Übermittlungen").click()
    expect(page).to_have_url(re.compile(re.escape(web_app.url + "/console/transfers")))
    expect(page.get_by_role("heading", level=1)).not_to_have_text(re.compile("Fehler"))
    for closed in ("/console/users", "/console/users/new", "/console/quarantine"):
        answer = page.goto(web_app.url + closed)
        assert answer is not None and answer.status == 403, closed
        expect(page.get_by_role("heading", name="Fehler 403")).to_be_visible()
        expect(page.get_by_text("Sie haben keine Berechtigung für diese Seite.")).to_be_visible()
