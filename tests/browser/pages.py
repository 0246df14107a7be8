"""What browser tests do on every page: log a staff user in through the real forms (password,
then the TOTP code), and check the page with axe-core."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect


def log_in(page: Page, url: str, username: str, password: str, secret: str, *,
           at: datetime | None = None) -> None:
    """``at``: the app's time when its clock is a test's (the code a phone shows then)."""
    page.goto(url + "/login")
    page.get_by_label("Benutzername").fill(username)
    page.get_by_label("Passwort").fill(password)
    page.get_by_role("button", name="Anmelden").click()
    expect(page).to_have_url(url + "/login/code")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(at or datetime.now(UTC)))
    page.get_by_role("button", name="Bestätigen").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()


def no_serious_violations(page: Page) -> None:
    """axe-core on the page as it is now: no serious or critical violation (WCAG 2.1 AA)."""
    results = Axe().run(page)
    serious = [v for v in results.response["violations"]
               if v.get("impact") in ("serious", "critical")]
    assert not serious, results.generate_report()
