"""The citizen portal's upload in a real browser: the form filled in and two files chosen,
the receipt with their names and SHA-256, both pages without serious accessibility
violations (axe-core); and the same flow with the keyboard alone. The portal runs under
uvicorn on loopback, scanning with the real clamd."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import FilePayload, Page

from gateway.settings import Settings
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.conftest import make_settings
from tests.support.portal import serving_portal

pytestmark = pytest.mark.browser

FIRST = b"%PDF-1.4\n% Bescheid vom 1. Dezember\n" * 20
SECOND = b"Stundenplan der Kita, Woche 49\n" * 30


@pytest.fixture(scope="module")
def portal_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
               ) -> Iterator[str]:
    # One served portal for the module's tests (each starts from its own form).
    tmp_path = tmp_path_factory.mktemp("portal")
    database = tmp_path / "xgate.db"
    shutil.copyfile(sqlite_template, database)
    settings: Settings = make_settings(tmp_path / "var", f"sqlite:///{database}", portal={
        "enabled": True, "min_fill_seconds": 0,
        "topics": [{"name": "Kindertagespflege", "mailbox": "kita@jugendamt.example"},
                   {"name": "Kinderschutz", "mailbox": "kinderschutz@jugendamt.example"}]})
    with serving_portal(settings) as url:
        yield url


def test_uploading_two_files_gives_a_printable_receipt(page: Page, portal_url: str) -> None:
    page.goto(portal_url + "/")
    assert page.title().startswith("Nachricht und Unterlagen senden")
    page.select_option("#topic", "Kindertagespflege")
    page.fill("#name", "Erika Mustermann")
    page.fill("#email", "erika@example.org")
    page.fill("#case_reference", "JA-2026-0815")
    page.fill("#message", "Guten Tag,\nanbei der Bescheid und der Stundenplan.\nErika Mustermann")
    files: list[FilePayload] = [
        {"name": "Bescheid.pdf", "mimeType": "application/pdf", "buffer": FIRST},
        {"name": "Stundenplan.txt", "mimeType": "text/plain", "buffer": SECOND}]
    page.set_input_files("#files", files)
    no_serious_violations(page)
    screenshot(page, "portal-upload")

    page.click("button[type=submit]")
    page.wait_for_selector("#reference")
    assert page.title().startswith("Eingangsbestätigung")
    reference = page.inner_text("#reference")
    assert reference.startswith("P-") and len(reference) == 21
    body = page.inner_text("main")
    for name, data in (("Bescheid.pdf", FIRST), ("Stundenplan.txt", SECOND)):
        assert name in body and hashlib.sha256(data).hexdigest() in body
    assert "erika@example.org" in body
    no_serious_violations(page)
    screenshot(page, "portal-receipt")
    # Printed (or saved as PDF): the header bar and the links are left out.
    page.emulate_media(media="print")
    assert not page.is_visible(".site-header")
    assert page.is_visible("#reference")


def _focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.tagName"))


def test_the_upload_works_with_the_keyboard_alone(page: Page, portal_url: str) -> None:
    page.goto(portal_url + "/")
    # The first Tab reaches the skip link; Enter moves on to the page's content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert _focused(page) == "topic"
    # The focus is visible (the portal's :focus-visible outline).
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("ArrowDown")  # the second topic
    assert page.evaluate("document.activeElement.value") == "Kinderschutz"
    for field, text in (("name", "Erika Mustermann"), ("email", ""),
                        ("case_reference", "JA-2026-0815"),
                        ("message", "Guten Tag,\nanbei der Bescheid.")):
        page.keyboard.press("Tab")
        assert _focused(page) == field
        for line_no, line in enumerate(text.split("\n")):
            if line_no:
                page.keyboard.press("Enter")  # a new line in the message
            page.keyboard.type(line)
    page.keyboard.press("Tab")
    assert _focused(page) == "files"
    # The file chooser is the system's dialog: the file is given to the focused input.
    chosen: FilePayload = {"name": "Bescheid.pdf", "mimeType": "application/pdf",
                           "buffer": FIRST}
    page.locator(":focus").set_input_files([chosen])
    # The honeypot is skipped (tabindex -1): next is the send button, pressed with Space.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Space")
    page.wait_for_selector("#reference")
    body = page.inner_text("main")
    assert "Kinderschutz" in body and "Bescheid.pdf" in body
    assert hashlib.sha256(FIRST).hexdigest() in body
    # From the receipt, back to a new form with the keyboard: skip link, then the link.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/"
    page.keyboard.press("Enter")
    page.wait_for_selector("#topic")
    assert page.title().startswith("Nachricht und Unterlagen senden")
