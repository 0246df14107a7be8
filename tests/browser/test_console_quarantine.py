"""Releasing a quarantined message in a real browser (Debian's chromium through Playwright)
against the real web app under uvicorn, with the real re-scan (clamd), the real worker and
relay, and an SMTP sink for what leaves: one admin's approval releases nothing (and the same
admin cannot approve twice); a second admin's approval re-scans and releases, and the message
arrives at the sink. axe-core finds no serious or critical violations. Screenshot
console-quarantine. SQLite only: the pages' database work is covered on both backends by
tests/test_console_quarantine.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select, update

from gateway.db import read_scope, session_scope
from gateway.models import Message, MessageState
from gateway.services import Services
from gateway.settings import Settings
from gateway.staff import users as staff
from tests.browser.conftest import screenshot
from tests.browser.pages import log_in, no_serious_violations
from tests.support.pipeline import drain, enqueue
from tests.support.sink import SmtpSink
from tests.support.smime_pki import make_ca
from tests.support.smtp_fixtures import partner_relay_settings, relaying_services
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PASSWORD = "ein sehr langes passwort"
RECIPIENT = "asd@jugendamt.example"
MAIL = (b"From: fachdienst@jugendamt-b.example\r\nTo: asd@jugendamt.example\r\n"
        b"Subject: Stellungnahme\r\nMessage-ID: <q1@jugendamt-b.example>\r\n\r\n"
        b"Die Vorlage ist harmlos.\r\n")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    (tmp_path / "ca.pem").write_bytes(make_ca(tmp_path, "ca", bits=2048).cert_pem.read_bytes())
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={}, users={})
    with session_scope(built.sessions) as s:
        for name in ("alice", "bob"):
            staff.add_user(s, name, PASSWORD, admin=True)
    return built


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with serving_web_app(services.settings) as port:
        yield f"http://127.0.0.1:{port}"


def state(services: Services, qid: str) -> MessageState:
    with read_scope(services.sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


def test_two_admins_release_a_quarantined_message(page: Page, browser: Browser, url: str,
                                                   services: Services, sink: SmtpSink) -> None:
    qid = enqueue(services, [RECIPIENT], MAIL, mail_from="fachdienst@jugendamt-b.example")
    with session_scope(services.sessions) as s:
        # A false positive of an old signature, as the scan stage would have recorded it.
        s.execute(update(Message).where(Message.queue_id == qid).values(
            state=MessageState.QUARANTINED, reason="infected: Doc.Macro.Heuristic FOUND"))

    log_in(page, url, "alice", PASSWORD, enrol(services.settings, "alice"))
    page.get_by_role("link", name="Quarantäne").click()
    row = page.locator(f"#q-{qid}")
    expect(row).to_contain_text("infected: Doc.Macro.Heuristic FOUND")
    expect(row).to_contain_text("0/2")
    no_serious_violations(page)
    screenshot(page, "console-quarantine")
    row.get_by_role("link", name=qid).click()
    expect(page.locator("#facts")).not_to_contain_text("Die Vorlage ist harmlos")
    page.locator("#release-reason").fill("Fehlalarm, Hersteller bestätigt")
    page.get_by_role("button", name="Freigabe beantragen").click()
    expect(page.locator("#done")).to_contain_text("Ihre Freigabe ist vermerkt")
    expect(page.locator("#approvals")).to_contain_text("1/2 (alice)")
    no_serious_violations(page)

    # The same admin once more: refused, and one approval releases nothing.
    page.locator("#release-reason").fill("ich nochmal")
    page.get_by_role("button", name="Freigabe beantragen").click()
    expect(page.locator("#form-error")).to_contain_text("eine zweite, andere Admin-Person")
    drain(services)
    assert state(services, qid) is MessageState.QUARANTINED
    assert not [d for d in sink.deliveries if RECIPIENT in d.rcpt_tos]

    second = browser.new_context(locale="de-DE")
    try:
        bob = second.new_page()
        log_in(bob, url, "bob", PASSWORD, enrol(services.settings, "bob"))
        bob.goto(f"{url}/console/quarantine/{qid}")
        bob.locator("#release-reason").fill("Geprüft: Vorlage ohne Makro")
        bob.get_by_role("button", name="Freigabe bestätigen").click()
        expect(bob.locator("#done")).to_contain_text("Freigegeben nach sauberer erneuter")
        expect(bob.locator("#rescans")).to_contain_text("sauber")
    finally:
        second.close()
    drain(services)
    assert state(services, qid) is MessageState.DELIVERED
    [delivered] = [d for d in sink.deliveries if RECIPIENT in d.rcpt_tos]
    assert b"Die Vorlage ist harmlos." in delivered.content
