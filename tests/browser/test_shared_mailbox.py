"""A caseworker's day in a real browser (Debian's chromium through Playwright) against the
real web app under uvicorn, the real SMTP listener, the real worker and relay, a sink for
what leaves: a partner's encrypted and signed mail becomes a ticket; login with TOTP; the
ticket list and the ticket page (axe-core: no serious or critical violations); assignment;
an internal note; a reply encrypted to the partner that arrives at the sink; a reply the
consent gate holds, with the reason on the page; the partner's follow-up threaded in; an HTML
mail whose script, javascript: link and remote image do nothing. Screenshots for the README.
SQLite only: the pages' database work is covered on both backends by tests/test_web_*."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gateway.db import session_scope
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import own_keys_for
from gateway.keydir.own_openpgp import generate_own_openpgp
from gateway.services import Services
from gateway.settings import Settings
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from tests.browser import pages
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.support import crypto_setup
from tests.support.gpg_partner import GpgPartner
from tests.support.pipeline import drain
from tests.support.sink import SmtpSink
from tests.support.smime_pki import make_ca
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

pytestmark = [pytest.mark.usefixtures("cheap_hashing"), pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

BOX = "kindertagespflege@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
USER, PASSWORD = "anna", "ein sehr langes passwort"
ENTITY = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"Bitte um Stellungnahme zur Pflegestelle.\r\n")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    (tmp_path / "ca.pem").write_bytes(make_ca(tmp_path, "ca", bits=2048).cert_pem.read_bytes())
    return partner_relay_settings(tmp_path, database_url, sink)


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={BOX: "Kindertagespflege"},
                              users={USER: (PASSWORD, [])})
    with session_scope(built.sessions) as s:
        add_member(s, BOX, USER, MemberRole.AGENT, actor="test", now=built.clock())
        generate_own_openpgp(s, built.master_key, BOX, actor="test", now=built.clock())
    return built


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with serving_web_app(services.settings) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[GpgPartner]:
    with GpgPartner.create(tmp_path / "gpg") as partner:
        yield partner


def log_in(page: Page, url: str, secret: str) -> None:
    pages.log_in(page, url, USER, PASSWORD, secret)


def send_mail(edge: Edge, sender: str, data: bytes) -> None:
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(sender, [BOX], data)


def test_a_caseworker_handles_a_partners_mail(page: Page, url: str, services: Services,
                                              edge: Edge, sink: SmtpSink,
                                              gpg: GpgPartner) -> None:
    with session_scope(services.sessions) as s:
        [box_key] = own_keys_for(s, services.master_key, BOX, KeyKind.OPENPGP)
    fpr = gpg.generate(f"Fachdienst <{PARTNER}>", "rsa3072")
    gpg.import_keys(box_key.public)
    crypto_setup.partner(services, "Jugendamt B", "jugendamt-b.example",
                         outbound_policy="require-openpgp")
    crypto_setup.partner_key(services, gpg.export_public(fpr))
    raw = gpg.pgp_mime_encrypted(ENTITY, [box_key.fingerprint], signer=fpr)
    raw = raw.replace(b"From: asd@partner.example", f"From: {PARTNER}".encode(), 1)
    raw = raw.replace(b"Subject: Hilfeplan", b"Subject: Stellungnahme Pflegestelle", 1)
    send_mail(edge, PARTNER, raw)
    drain(services)

    log_in(page, url, enrol(services.settings, USER))
    expect(page.locator("#mailboxes")).to_contain_text("1 neu, 0 offen")
    page.get_by_role("link", name="Kindertagespflege").click()
    row = page.locator("#tickets tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Stellungnahme Pflegestelle")
    expect(row).to_contain_text("OpenPGP-verschlüsselt")
    expect(row).to_contain_text(f"Signatur geprüft: {PARTNER}")
    no_serious_violations(page)
    screenshot(page, "mailbox-list")

    row.get_by_role("link").click()
    expect(page.locator("#article-1")).to_contain_text("Bitte um Stellungnahme zur Pflegestelle.")
    no_serious_violations(page)
    screenshot(page, "ticket")

    page.get_by_role("button", name="Mir zuweisen").click()
    expect(page.locator("#ticket-assignee")).to_have_text(USER)
    page.get_by_label("Notiz (verlässt das Amt nie)").fill("Rückruf am Dienstag vereinbart.")
    page.get_by_role("button", name="Notiz speichern").click()
    expect(page.locator(".article-note")).to_contain_text("Rückruf am Dienstag vereinbart.")

    # A reply, encrypted for the partner by the gateway, arrives at the sink.
    page.get_by_label("Text", exact=True).fill("Die Stellungnahme folgt bis Freitag.")
    screenshot(page, "reply-form")
    page.get_by_role("button", name="Antwort senden").click()
    expect(page.locator(".article-reply")).to_contain_text("Wird bearbeitet")
    drain(services)
    page.reload()
    expect(page.locator(".article-reply").first).to_contain_text("Versendet")
    [delivered] = [d for d in sink.deliveries if d.rcpt_tos == (PARTNER,) and d.mail_from]
    content = delivered.content
    armored = content[content.index(b"-----BEGIN PGP MESSAGE-----"):]
    opened = gpg.decrypt(armored[: armored.index(b"-----END PGP MESSAGE-----") + 25])
    assert b"Die Stellungnahme folgt bis Freitag." in opened.stdout, opened.stderr
    assert b"Die Stellungnahme folgt" not in content  # never in clear on the wire

    # A report with a case but no release: the consent gate holds it, the page says why.
    page.get_by_label("Text", exact=True).fill("Anbei der Bericht zum Kind.")
    page.get_by_label("Aktenzeichen").fill("51.2-0815/2026")
    page.get_by_label("Kategorie").fill("Gutachten")
    page.get_by_role("button", name="Antwort senden").click()
    drain(services)
    page.reload()
    held = page.locator(".article-reply").nth(1)
    expect(held).to_contain_text("Zurückgehalten")
    expect(held.locator(".reason")).not_to_be_empty()
    assert len([d for d in sink.deliveries if d.rcpt_tos == (PARTNER,) and d.mail_from]) == 1

    # The partner answers our reply: threaded into the same ticket.
    follow_up = gpg.pgp_mime_encrypted(
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nDanke, wir warten.\r\n",
        [box_key.fingerprint], signer=fpr)
    reply_id = delivered.content.split(b"Message-ID:", 1)[1].split(b"\r\n", 1)[0].strip()
    follow_up = follow_up.replace(b"From: asd@partner.example", (
        f"From: {PARTNER}\r\nIn-Reply-To: {reply_id.decode()}").encode(), 1)
    send_mail(edge, PARTNER, follow_up)
    drain(services)
    page.reload()
    expect(page.locator(".article-inbound")).to_have_count(2)
    expect(page.locator(".article-inbound").nth(1)).to_contain_text("Danke, wir warten.")


def test_html_mail_shows_nothing_active(page: Page, url: str, services: Services,
                                        edge: Edge) -> None:
    html = ('<html><body><p>Guten Tag</p><script>document.title="pwned";alert(1)</script>'
            '<a href="javascript:document.title=\'pwned\'">hier klicken</a>'
            '<img src="http://tracker.example/pixel.png" alt="Logo"></body></html>')
    data = (f"From: eltern@web.example\r\nTo: {BOX}\r\nSubject: HTML-Mail\r\n"
            "Message-ID: <html1@web.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").encode()
    send_mail(edge, "eltern@web.example", data)
    drain(services)
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, url, enrol(services.settings, USER))
    page.get_by_role("link", name="Kindertagespflege").click()
    page.locator("#tickets tbody tr").get_by_role("link").click()
    article = page.locator(".article-inbound")
    expect(article).to_contain_text("Guten Tag")
    expect(article).to_contain_text("hier klicken")
    assert article.locator("script, img, iframe, a[href^='javascript']").count() == 0
    article.get_by_text("hier klicken").click()
    assert page.title() != "pwned" and not dialogs
    assert not [r for r in requests if "tracker.example" in r]
