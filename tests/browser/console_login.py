"""Logging an admin in through the real forms in the browser (password, then the TOTP code)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp
from playwright.sync_api import Page, expect


def log_in(page: Page, url: str, username: str, password: str, secret: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Benutzername").fill(username)
    page.get_by_label("Passwort").fill(password)
    page.get_by_role("button", name="Anmelden").click()
    expect(page).to_have_url(url + "/login/code")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(datetime.now(UTC)))
    page.get_by_role("button", name="Bestätigen").click()
    expect(page.get_by_role("heading", name="Übersicht")).to_be_visible()
