"""The consent register in a real browser (Debian's chromium through Playwright) against the
real web app under uvicorn, with the real worker, relay and clamd and an SMTP sink standing in
for the partner office: a report from a shared mailbox is held for want of consent; its
caseworker records the release in the console with the scan of the signed form (a small real
PDF) uploaded; the held report leaves by itself, S/MIME-encrypted, and the partner's openssl
reads it. axe-core: no serious or critical violations. Screenshot console-consent.
SQLite only: the pages' database work is covered on both backends by tests/test_web_consent.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import FilePayload, Page, expect
from sqlalchemy import select

from gateway.consent.models import ConsentDocument, ConsentRelease
from gateway.db import read_scope, session_scope
from gateway.models import Direction, MessageState
from gateway.policy.consent import local_date
from gateway.services import Services
from gateway.settings import Settings
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.browser import pages
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.support.consent_web import small_pdf
from tests.support.openssl_partner import mail
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.sink import SmtpSink
from tests.support.smtp_fixtures import partner_relay_settings, relaying_services
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app
from tests.test_smtp_consent_e2e import CASE, ENTITY, MAILBOX, PARTNER, TEXT, Office

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

USER, PASSWORD = "sb", "Sehr-geheimes-Passwort-1"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={MAILBOX: "Fallübergaben"},
                              users={USER: (PASSWORD, [])})
    with session_scope(built.sessions) as s:
        add_member(s, MAILBOX, USER, MemberRole.AGENT, actor="test", now=built.clock())
    return built


@pytest.fixture
def office(services: Services, tmp_path: Path) -> Office:
    return Office(services, tmp_path)


@pytest.fixture
def url(services: Services, office: Office) -> Iterator[str]:
    with serving_web_app(services.settings) as port:
        yield f"http://127.0.0.1:{port}"


def log_in(page: Page, url: str, secret: str) -> None:
    pages.log_in(page, url, USER, PASSWORD, secret)


def test_a_release_with_its_scan_lets_the_held_report_leave(
        page: Page, url: str, services: Services, sink: SmtpSink, office: Office) -> None:
    # The team's report to the partner office, without a release: the gate holds it.
    queue_id = enqueue(services, [PARTNER], mail(
        ENTITY, sender=MAILBOX, to=PARTNER, subject=f"[AZ {CASE}][Gutachten] Umzug der Familie K."),
        mail_from=MAILBOX, direction=Direction.OUTBOUND)
    drain(services)
    assert load_message(services, queue_id).state == MessageState.HELD

    log_in(page, url, enrol(services.settings, USER))
    page.get_by_role("link", name="Schweigepflichtentbindungen").click()
    page.locator("#held-count a").click()
    expect(page.locator(f"#held-{queue_id}")).to_contain_text(CASE)
    expect(page.locator(f"#held-{queue_id}")).to_contain_text("Wartet auf eine Entbindung")

    # Record the release, the signed form's scan uploaded.
    page.get_by_role("link", name="Neue Entbindung erfassen").click()
    today = local_date(datetime.now(UTC))
    page.get_by_label("Aktenzeichen").fill(CASE)
    page.get_by_label("Betroffene Personen").fill("C. K.")
    page.get_by_label("Erteilt von").fill("M. K.")
    page.get_by_label("psychologisches Gutachten").check()
    page.get_by_label("Partner (Empfänger)").fill("Jugendamt B")
    page.get_by_label("Zweck").fill("Fallübergabe bei Umzug")
    page.get_by_label("Gültig ab").fill(today.isoformat())
    page.get_by_label("Gültig bis").fill((today + timedelta(days=90)).isoformat())
    pdf = small_pdf()
    scan: FilePayload = {"name": "Entbindung K.pdf", "mimeType": "application/pdf",
                         "buffer": pdf}
    page.get_by_label("Unterschriebene Entbindung (Scan)").set_input_files(files=[scan])
    no_serious_violations(page)
    page.get_by_role("button", name="Entbindung speichern").click()
    expect(page.locator("#release-summary")).to_contain_text("Fassung 1")
    expect(page.locator("#version-1")).to_contain_text("Entbindung K.pdf")
    # Recording it sent the case's held report through the gate again: no longer held.
    expect(page.locator("#no-held")).to_be_visible()
    assert load_message(services, queue_id).state == MessageState.DEFERRED
    with read_scope(services.sessions) as s:
        release = s.scalars(select(ConsentRelease)).one()
        document = s.scalars(select(ConsentDocument)).one()
        assert release.mailbox_id is not None
        assert (document.size, document.content_type) == (len(pdf), "application/pdf")

    # The worker takes the re-checked report: it leaves, encrypted for the partner.
    drain(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    [report] = [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]
    assert TEXT not in report.content
    assert TEXT in office.read(report)

    page.get_by_role("link", name="Zurückgehaltene Berichte").click()
    expect(page.locator("#no-held")).to_be_visible()
    page.go_back()
    no_serious_violations(page)
    screenshot(page, "console-consent")
