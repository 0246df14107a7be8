"""Approving a harvested certificate in a real browser (Debian's chromium through Playwright)
against the real web app under uvicorn, the real worker and relay, and an SMTP sink: a report
to a partner that demands S/MIME is held while the partner's only certificate (taken from a
signed message) is pending; the admin compares the fingerprint on the keys page and approves
it, and the report leaves encrypted. Also the partners page with a dry run. axe-core finds no
serious or critical violations. Screenshots console-keys and console-partners. SQLite only:
the pages' database work is covered on both backends by tests/test_console_keys.py and
tests/test_console_partners.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.db import read_scope, session_scope
from gateway.keydir import keys
from gateway.keydir.models import KeyKind
from gateway.keydir.views import spoken_fingerprint
from gateway.models import Direction, Message, MessageState
from gateway.services import Services
from gateway.settings import Settings
from gateway.staff import users as staff
from tests.browser.conftest import screenshot
from tests.browser.pages import log_in, no_serious_violations
from tests.support import crypto_setup
from tests.support.pipeline import drain, enqueue
from tests.support.sink import SmtpSink
from tests.support.smime_pki import Party, make_ca, make_person
from tests.support.smtp_fixtures import partner_relay_settings, relaying_services
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PASSWORD = "ein sehr langes passwort"
STAFF = "asd@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
REPORT = (b"From: asd@jugendamt.example\r\nTo: fachdienst@jugendamt-b.example\r\n"
          b"Subject: Hilfeplan\r\nMessage-ID: <k1@jugendamt.example>\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n\r\nHilfeplan fuer Kind A.\r\n")


@pytest.fixture
def partner_cert(tmp_path: Path) -> Party:
    ca = make_ca(tmp_path, "ca", bits=2048)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.read_bytes())
    return make_person(tmp_path, "partner", PARTNER, ca)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink,
             partner_cert: Party) -> Settings:
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={}, users={})
    with session_scope(built.sessions) as s:
        staff.add_user(s, "alice", PASSWORD, admin=True)
    crypto_setup.partner(built, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-smime")
    return built


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with serving_web_app(services.settings) as port:
        yield f"http://127.0.0.1:{port}"


def state(services: Services, qid: str) -> MessageState:
    with read_scope(services.sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == qid)).one()


def test_approving_a_harvested_certificate_lets_the_held_report_leave(
        page: Page, url: str, services: Services, sink: SmtpSink, partner_cert: Party) -> None:
    with session_scope(services.sessions) as s:
        key = keys.harvest(s, kind=KeyKind.SMIME, data=partner_cert.der, addresses=[PARTNER],
                           queue_id="0A1B2C3D4E5F6071", actor="worker", now=services.clock())
        assert key is not None
        key_id, print_ = key.id, key.fingerprint
    qid = enqueue(services, [PARTNER], REPORT, mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(services)
    assert state(services, qid) is MessageState.HELD

    log_in(page, url, "alice", PASSWORD, enrol(services.settings, "alice"))
    page.get_by_role("link", name="Schlüssel").click()
    row = page.locator(f"#pending-{key_id}")
    expect(row).to_contain_text(spoken_fingerprint(KeyKind.SMIME, print_))
    expect(row).to_contain_text("aus signierter Nachricht übernommen (0A1B2C3D4E5F6071)")
    expect(row).to_contain_text("Jugendamt B")
    no_serious_violations(page)
    screenshot(page, "console-keys")
    row.get_by_role("button", name="Freigeben").click()
    expect(page.locator("#done")).to_contain_text("Der Schlüssel ist freigegeben")
    expect(page.locator("#status")).to_contain_text("freigegeben")

    drain(services)
    assert state(services, qid) is MessageState.DELIVERED
    [sent] = [d for d in sink.deliveries if PARTNER in d.rcpt_tos]
    assert b"application/pkcs7-mime" in sent.content
    assert b"Hilfeplan fuer Kind A." not in sent.content

    # The partner's policy and the dry run of xgate policy explain.
    page.get_by_role("link", name="Partner", exact=True).click()
    expect(page.locator("#partners")).to_contain_text("jugendamt-b.example")
    page.get_by_label("Von").fill(STAFF)
    page.get_by_label("An").fill(PARTNER)
    page.get_by_role("button", name="Probelauf").click()
    expect(page.locator("#verdict")).to_have_text("encrypt-smime")
    no_serious_violations(page)
    screenshot(page, "console-partners")
