"""Pickup in a real browser (Debian's chromium through Playwright): a caseworker's reply to a
citizen without key goes to the citizen portal (policy either-or-portal); the notice reaches
the SMTP sink without content; the caseworker issues the code on the ticket page; the citizen
opens the link, enters the code, downloads the attachment and answers with text and a file,
all by keyboard only (Tab, Enter and typing; no mouse clicks); the caseworker sees the answer
and the download record in the ticket. axe-core on every pickup page (no serious or critical
violations). The staff app, the portal, the worker, the relay and the sink are real; SQLite
only (tests/test_portal_outbound_pickup.py and test_portal_pickup_answer_files.py cover
both backends)."""

from __future__ import annotations

import email
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, FileChooser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from gateway.db import session_scope
from gateway.portal.app import create_portal_app
from gateway.portal.pickup.items import create_item
from gateway.services import Services
from gateway.settings import RelayRoute, Settings, TlsPolicy
from mailboxes.directory import mailbox_id_for
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.records import create_ticket
from tests.browser import pages
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.conftest import make_settings
from tests.support.clamd import EICAR
from tests.support.pipeline import drain
from tests.support.ports import free_port
from tests.support.sink import SmtpSink
from tests.support.smtp_fixtures import relaying_services
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app

pytestmark = [pytest.mark.usefixtures("cheap_hashing"), pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

BOX = "kindertagespflege@jugendamt.example"
CITIZEN = "erika@web.example"
USER, PASSWORD = "anna", "ein sehr langes passwort"
REPLY = "Ihr Antrag ist bewilligt. Den Bescheid finden Sie im Anhang."
BESCHEID = b"%PDF-1.4\n% Bewilligungsbescheid\n" * 10
ANSWER = "Vielen Dank! Anbei die Gehaltsbescheinigung."
PAYSLIP = b"Gehaltsbescheinigung November\n" * 20


@contextmanager
def serving_portal(settings: Settings, port: int) -> Iterator[str]:
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


@pytest.fixture
def portal_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink, portal_port: int) -> Settings:
    return make_settings(
        tmp_path / "var", database_url,
        crypto={"unknown_partner_outbound": "either-or-portal"},
        portal={"enabled": True, "public_url": f"http://127.0.0.1:{portal_port}"},
        delivery={"routes": [RelayRoute(domain="*", host=sink.host, port=sink.port,
                                        tls=TlsPolicy.NONE).model_dump()]})


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={BOX: "Kindertagespflege"},
                              users={USER: (PASSWORD, [])})
    with session_scope(built.sessions) as s:
        add_member(s, BOX, USER, MemberRole.AGENT, actor="test", now=built.clock())
    return built


def log_in(page: Page, url: str, secret: str) -> None:
    pages.log_in(page, url, USER, PASSWORD, secret)


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until the element ``selector`` names has the focus (the page's focus order
    must reach it)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def choose_by_keyboard(page: Page) -> FileChooser:
    """Open the file chooser of the focused file input by keyboard (Enter, else Space).

    Chromium sometimes drops the chooser of a key press that follows a download (seen once
    in CI: no ``filechooser`` event within 30 s); a second key, still from the keyboard,
    asks again. If neither key opens it, the input is not keyboard-operable and this fails.
    """
    for key in ("Enter", "Space", "Enter"):
        try:
            with page.expect_file_chooser(timeout=5_000) as choosing:
                page.keyboard.press(key)
            return choosing.value
        except PlaywrightTimeoutError:
            continue
    raise AssertionError("the focused file input did not open a chooser by keyboard")


def notice_text(sink: SmtpSink) -> tuple[str, bytes]:
    [notice] = [d for d in sink.deliveries if d.rcpt_tos == (CITIZEN,)]
    assert notice.mail_from == ""
    msg = email.message_from_bytes(notice.content, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return body.get_content(), notice.content


def test_a_reply_goes_to_pickup_and_the_citizen_answers_by_keyboard(
        page: Page, browser: Browser, services: Services, sink: SmtpSink,
        portal_port: int) -> None:
    with session_scope(services.sessions) as s:
        box = mailbox_id_for(s, BOX)
        assert box is not None
        ticket_id, _ = create_ticket(s, services.master_key, mailbox_id=box[0],
                                     requester=CITIZEN, subject="Antrag Kindertagespflege",
                                     actor="test", now=services.clock())
    with serving_web_app(services.settings) as staff_port, \
            serving_portal(services.settings, portal_port) as portal:
        staff = f"http://127.0.0.1:{staff_port}"
        # The caseworker answers with an attachment; the citizen has no key.
        log_in(page, staff, enrol(services.settings, USER))
        page.goto(f"{staff}/tickets/{ticket_id}")
        page.get_by_label("Text", exact=True).fill(REPLY)
        page.set_input_files("#reply-attachments", [{
            "name": "Bescheid.pdf", "mimeType": "application/pdf", "buffer": BESCHEID}])
        page.get_by_role("button", name="Antwort senden").click()
        drain(services)  # the reply becomes a pickup item; the notice goes to the sink

        text, raw = notice_text(sink)
        for secret in (REPLY, "bewilligt", "Bescheid.pdf", "Antrag Kindertagespflege"):
            assert secret not in text and secret.encode() not in raw, secret
        [link] = {w for w in text.split() if w.startswith(portal + "/p/")}

        page.reload()
        pickup = page.locator("#pickup-items")
        expect(pickup).to_contain_text(CITIZEN)
        expect(pickup).to_contain_text("noch kein Abholcode ausgegeben")
        # In the reader's language, not the worker's English.
        expect(page.locator(".article-reply")).to_contain_text(
            "im Bürgerportal zur Abholung bereitgestellt")
        screenshot(page, "portal-pickup-ticket")
        pickup.get_by_role("button", name="Neuen Abholcode ausgeben").click()
        code = page.locator("#pickup-code").inner_text().strip()
        assert len(code) == 8

        # The citizen, in her own browser, by keyboard only.
        citizen = browser.new_context(locale="de-DE", viewport={"width": 1000, "height": 760},
                                      accept_downloads=True).new_page()
        citizen.goto(link)
        expect(citizen.get_by_role("heading", name="Nachricht abholen")).to_be_visible()
        no_serious_violations(citizen)
        screenshot(citizen, "portal-pickup")
        tab_to(citizen, "#code")
        citizen.keyboard.type(code.lower())  # case does not count
        citizen.keyboard.press("Enter")
        expect(citizen.get_by_role("heading", name="Ihre Nachricht")).to_be_visible()
        expect(citizen.locator(".message-text")).to_contain_text(REPLY)
        no_serious_violations(citizen)
        screenshot(citizen, "portal-pickup-message")

        tab_to(citizen, "a[download]")
        with citizen.expect_download() as downloading:
            citizen.keyboard.press("Enter")
        download = downloading.value
        assert download.suggested_filename == "Bescheid.pdf"
        assert Path(download.path()).read_bytes() == BESCHEID

        tab_to(citizen, "#answer-text")
        citizen.keyboard.type(ANSWER)
        tab_to(citizen, "#answer-files")
        choose_by_keyboard(citizen).set_files([{"name": "Gehalt.txt", "mimeType": "text/plain",
                                                "buffer": PAYSLIP}])
        tab_to(citizen, "form[action$='/answer'] button[type=submit]")
        citizen.keyboard.press("Enter")
        expect(citizen.get_by_role("heading", name="Antwort gesendet")).to_be_visible()
        no_serious_violations(citizen)
        screenshot(citizen, "portal-pickup-answered")
        citizen.context.close()

        drain(services)  # the answer is scanned and threaded into the same ticket
        page.goto(f"{staff}/tickets/{ticket_id}")
        answer = page.locator(".article-inbound")
        expect(answer).to_have_count(1)
        expect(answer).to_contain_text(ANSWER)
        expect(answer).to_contain_text("Gehalt.txt")
        expect(pickup).to_contain_text("geöffnet")
        expect(pickup).to_contain_text("Anhang 1 heruntergeladen")
        screenshot(page, "portal-pickup-ticket-answered")


def test_the_other_pickup_pages_pass_axe(page: Page, services: Services,
                                         portal_port: int) -> None:
    """The pages a citizen meets when something is wrong: a wrong code, a locked item, an
    expired one, an answer refused (an infected file, named)."""
    services.settings.portal.pickup_max_tries = 2
    now = datetime.now(UTC)
    with session_scope(services.sessions) as s:
        box = mailbox_id_for(s, BOX)
        assert box is not None
        ticket_id, _ = create_ticket(s, services.master_key, mailbox_id=box[0],
                                     requester=CITIZEN, subject="Antrag", actor="test",
                                     now=now)
        made = [create_item(s, services.master_key, ticket_id=ticket_id, recipient=CITIZEN,
                            message=_message(), actor="test", now=start,
                            valid_for=timedelta(days=1))
                for start in (now, now, now - timedelta(days=2))]
    fresh, to_lock, expired = made
    with serving_portal(services.settings, portal_port) as portal:
        def enter(token: str, code: str) -> None:
            page.goto(f"{portal}/p/{token}")
            page.get_by_label("Abhol-Code").fill(code)
            page.get_by_role("button", name="Nachricht öffnen").click()

        enter(to_lock.token, "WRONGCOD")
        expect(page.locator("#code-error")).to_be_visible()
        expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")
        no_serious_violations(page)
        enter(to_lock.token, "WRONGCOD")
        expect(page.get_by_role("heading", name="Abholung gesperrt")).to_be_visible()
        no_serious_violations(page)
        enter(expired.token, expired.code)
        expect(page.get_by_role("heading", name="Nachricht nicht mehr abrufbar")
               ).to_be_visible()
        no_serious_violations(page)

        enter(fresh.token, fresh.code)
        page.get_by_label("Ihre Antwort").fill("Hier die Unterlagen.")
        page.set_input_files("#answer-files", [{"name": "rechnung.com",
                                                "mimeType": "application/octet-stream",
                                                "buffer": EICAR}])
        page.get_by_role("button", name="Antwort senden").click()
        expect(page.get_by_role("alert")).to_contain_text("rechnung.com")
        no_serious_violations(page)
        screenshot(page, "portal-pickup-refused")
        page.get_by_role("link", name="Zurück zur Nachricht").click()
        expect(page.get_by_role("heading", name="Ihre Nachricht")).to_be_visible()


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = BOX, CITIZEN, "Ihr Antrag"
    msg["Message-ID"] = "<reply-1@gw.example>"
    msg.set_content("Guten Tag, bitte senden Sie uns die Unterlagen.")
    return msg.as_bytes()
