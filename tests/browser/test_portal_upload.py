"""The citizen portal's upload in a real browser: the form filled in and two files chosen,
the receipt with their names and SHA-256, both pages without serious accessibility
violations (axe-core). The portal runs under uvicorn on loopback, scanning with the real
clamd."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import FilePayload, Page

from gateway.portal.app import create_portal_app
from gateway.settings import Settings
from tests.browser.conftest import screenshot
from tests.conftest import make_settings
from tests.support.postgres import free_port

pytestmark = pytest.mark.browser

FIRST = b"%PDF-1.4\n% Bescheid vom 1. Dezember\n" * 20
SECOND = b"Stundenplan der Kita, Woche 49\n" * 30


@pytest.fixture
def portal_url(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    database = tmp_path / "xgate.db"
    shutil.copyfile(sqlite_template, database)
    settings: Settings = make_settings(tmp_path / "var", f"sqlite:///{database}", portal={
        "enabled": True, "min_fill_seconds": 0,
        "topics": [{"name": "Kindertagespflege", "mailbox": "kita@jugendamt.example"},
                   {"name": "Kinderschutz", "mailbox": "kinderschutz@jugendamt.example"}]})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_portal_app(settings), host="127.0.0.1",
                                           port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "portal did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [v for v in results.response["violations"]
               if v.get("impact") in ("serious", "critical")]
    assert not serious, results.generate_report()


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
