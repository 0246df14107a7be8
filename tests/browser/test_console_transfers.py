"""The console's transfer pages and verify chain in a real browser (Debian's chromium through
Playwright) against the real web app under uvicorn: a caseworker's report goes through the
real submission listener (STARTTLS, AUTH), the real worker (consent gate with a registered
release, clamd scan, signing, S/MIME encryption for the partner) and the real relay to an
SMTP sink; the data-protection officer finds it by its case reference and reads its
timeline. Then an audit row is altered in the database and *verify chain* (a background task
whose page reloads itself) points at it. axe-core finds no serious or critical violations.
Screenshots console-transfers, console-timeline, console-audit-verify. SQLite only: the pages'
database work is covered on both backends by tests/test_console_transfers.py and
tests/test_console_audit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, Message, MessageState
from gateway.services import Services
from gateway.settings import Settings
from gateway.staff.roles import GlobalRole, grant
from gateway.staff.users import add_user
from tests.browser.conftest import screenshot
from tests.browser.pages import log_in, no_serious_violations
from tests.support.openssl_partner import mail
from tests.support.pipeline import drain
from tests.support.sink import SmtpSink
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    partner_relay_settings,
    relaying_services,
    start_edge_fixture,
    tls_files_fixture,
)
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app
from tests.test_smtp_consent_e2e import CASE, ENTITY, MAILBOX, PARTNER, STAFF, Office, register

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PASSWORD = "Sehr-geheimes-Passwort-1"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={MAILBOX: "Fallübergaben"},
                              users={"sb": (PASSWORD, [STAFF])})
    with session_scope(built.sessions) as s:
        add_user(s, "dsb", PASSWORD)
        grant(s, "dsb", GlobalRole.DPO, actor="test")
    return built


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with serving_web_app(services.settings) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_report_found_by_its_case_its_timeline_and_a_broken_chain(
        page: Page, url: str, services: Services, edge: Edge, sink: SmtpSink,
        tmp_path: Path) -> None:
    Office(services, tmp_path)
    register(services)
    edge.submit("sb", PASSWORD, STAFF, [PARTNER],
                mail(ENTITY, sender=STAFF, to=PARTNER,
                     subject=f"[AZ {CASE}][Gutachten] Umzug der Familie K."))
    drain(services)
    with read_scope(services.sessions) as s:
        queue_id, state = s.execute(select(Message.queue_id, Message.state)
                                    .where(Message.mail_from == STAFF)).one()
    assert state is MessageState.DELIVERED
    assert [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,)]

    log_in(page, url, "dsb", PASSWORD, enrol(services.settings, "dsb"))
    page.get_by_role("link", name="Übermittlungen").click()
    page.get_by_label("Aktenzeichen").fill(CASE.upper())
    page.get_by_role("button", name="Suchen").click()
    results = page.locator("#results")
    expect(results.get_by_role("link", name=queue_id)).to_be_visible()
    expect(results).to_contain_text("zugestellt")
    expect(results).to_contain_text(PARTNER)
    no_serious_violations(page)
    screenshot(page, "console-transfers")

    results.get_by_role("link", name=queue_id).click()
    expect(page.get_by_role("heading", name=f"Weg der Nachricht {queue_id}")).to_be_visible()
    timeline = page.locator("#timeline")
    expect(timeline.locator('[data-action="received"]')).to_be_visible()
    expect(timeline.locator('[data-aspect="consent"]').first).to_contain_text(CASE)
    expect(timeline.locator('[data-aspect="scan"]').first).to_contain_text("clean")
    expect(timeline.locator('[data-aspect="key_policy"]').first).to_contain_text("smime")
    expect(page.locator("#recipients")).to_contain_text(PARTNER)
    expect(page.locator("main")).not_to_contain_text("Psychologisches Gutachten")
    no_serious_violations(page)
    screenshot(page, "console-timeline")

    with session_scope(services.sessions) as s:
        victim = s.scalar(select(AuditEntry.seq).where(AuditEntry.queue_id == queue_id)
                          .order_by(AuditEntry.seq).limit(1))
        assert victim is not None
        s.execute(update(AuditEntry).where(AuditEntry.seq == victim)
                  .values(detail='{"direction": "inbound"}'))
    page.get_by_role("link", name="Prüfprotokoll").click()
    page.get_by_role("button", name="Prüfkette prüfen").click()
    expect(page).to_have_url(url + "/console/tasks/1")
    # The task's page reloads itself (meta refresh) until the result is there.
    broken = page.locator("#chain-broken")
    expect(broken).to_contain_text(f"bei Eintrag {victim} unterbrochen", timeout=15_000)
    expect(page.locator("#task-state")).to_have_text("fertig")
    no_serious_violations(page)
    screenshot(page, "console-audit-verify")
    page.locator("#broken-entry").click()
    expect(page.locator("#entries tbody tr").first).to_have_id(f"entry-{victim}")
