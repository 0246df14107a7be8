"""The hotline in a real browser (chromium), the app's clock mocked: an agent logs a call and,
when the caller rings again, is offered the open ticket to add it to; the callbacks-due list
with an attempt logged in one click; a follow-up that comes back on its day (the clock moved
on), in the follow-ups view and as a mark in the ticket list. Accessibility (axe-core) of the
three pages; the screenshots hotline-call, callbacks-due and follow-ups for the README."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from crypto.at_rest import MasterKey
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.settings import Settings
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.hotline.calls import CallForm, log_call
from mailboxes.hotline.days import OFFICE_ZONE, office_day
from mailboxes.hotline.topics import add_topic
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.records import create_ticket
from tests.browser import pages
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.support.db import opened
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app

pytestmark = pytest.mark.browser

BOX = "kita@jugendamt.example"
AGENT = "s.berger"
PASSWORD = "ein sehr langes passwort"


@dataclass(frozen=True)
class Office:
    url: str
    clock: FakeClock
    secret: str
    settings: Settings
    master: MasterKey
    mailbox_id: int


@pytest.fixture
def office(web_settings: Settings) -> Iterator[Office]:
    clock = FakeClock()  # the real time, so the TOTP codes computed for it are valid
    master = MasterKey.load(web_settings.resolve(web_settings.storage.master_key_file))
    with opened(web_settings) as sessions:
        with session_scope(sessions) as s:
            box = add_mailbox(s, BOX, "Kindertagespflege")
            add_user(s, AGENT, PASSWORD)
            add_member(s, BOX, AGENT, MemberRole.AGENT, actor="test", now=clock())
            for topic in ("Betreuungsvertrag", "Geldleistung", "Pflegeerlaubnis"):
                add_topic(s, box, topic, actor="test")
            box_id = box.id
        secret = enrol(web_settings, AGENT)
        with serving_web_app(web_settings, clock=clock) as port:
            yield Office(f"http://127.0.0.1:{port}", clock, secret, web_settings, master,
                         box_id)


def log_in(page: Page, office: Office) -> None:
    pages.log_in(page, office.url, AGENT, PASSWORD, office.secret, at=office.clock())


def local(office: Office, hours: float) -> str:
    return (office.clock() + timedelta(hours=hours)).astimezone(OFFICE_ZONE).strftime(
        "%Y-%m-%dT%H:%M")


def test_logging_a_call_and_the_callers_second_call(page: Page, office: Office) -> None:
    log_in(page, office)
    page.get_by_role("link", name="Kindertagespflege").first.click()
    page.get_by_role("link", name="Anruf erfassen").click()
    page.get_by_label("Name der anrufenden Person").fill("Petra Sonnenschein")
    page.get_by_label("Anrufende(r) ist").select_option("childminder")
    page.get_by_label("Rückrufnummer").fill("0221 / 123 45 67")
    page.get_by_label("Thema").select_option("Betreuungsvertrag")
    page.get_by_label("Notizen zum Gespräch").fill("Fragt, wer die Vertretung im Urlaub "
                                                   "übernimmt.")
    page.get_by_label("Rückruf nötig").check()
    page.get_by_label("Rückruf bis").fill(local(office, 3))
    page.get_by_role("button", name="Anruf speichern").click()
    expect(page.locator("#ticket-channel")).to_contain_text("Telefonvorgang")
    expect(page.locator("#calls")).to_contain_text("Petra Sonnenschein")
    expect(page.locator("#calls")).to_contain_text("Rückruf fällig bis")
    number = page.locator("h1").inner_text().split(":")[0]
    # A bad number is said on the page, and what was typed stays.
    page.goto(f"{office.url}/hotline/{office.mailbox_id}/calls/new")
    page.get_by_label("Name der anrufenden Person").fill("Petra Sonnenschein")
    page.get_by_label("Rückrufnummer").fill("ruft zurück")
    page.get_by_role("button", name="Anruf speichern").click()
    expect(page.locator("#form-error")).to_contain_text("ist keine Telefonnummer")
    # She calls again: her open ticket is offered, found by the number written differently.
    page.get_by_label("Rückrufnummer").fill("02211234567")
    page.get_by_role("button", name="Offene Vorgänge dieser Person suchen").click()
    offered = page.locator("#call-matches")
    expect(offered).to_contain_text(number)
    offered.get_by_label(number, exact=False).check()
    page.get_by_label("Notizen zum Gespräch").fill("Ruft wegen des Vertrags erneut an.")
    no_serious_violations(page)
    screenshot(page, "hotline-call")
    page.get_by_role("button", name="Anruf speichern").click()
    expect(page.locator("h1")).to_contain_text(number)
    expect(page.locator("#calls li")).to_have_count(2)


def test_the_callbacks_due_with_an_attempt(page: Page, office: Office) -> None:
    with opened(office.settings) as sessions, session_scope(sessions) as s:
        from mailboxes.models import Mailbox

        box = s.get(Mailbox, office.mailbox_id)
        assert box is not None
        for caller, number, hours, topic in (
                ("Kita Sonnenblume", "0221 555 10", 4, "Geldleistung"),
                ("Jonas Keller", "0170 1234567", 1, "Pflegeerlaubnis"),
                ("Aylin Demir", "+49 221 98765", 2, "Betreuungsvertrag")):
            log_call(s, office.master, box, CallForm(
                caller, "parent" if caller != "Kita Sonnenblume" else "institution", number,
                topic=topic, callback_due=office.clock() + timedelta(hours=hours)),
                actor=AGENT, now=office.clock())
    log_in(page, office)
    page.goto(f"{office.url}/hotline/{office.mailbox_id}/callbacks")
    rows = page.locator("#callbacks tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Jonas Keller")
    expect(rows.nth(1)).to_contain_text("Aylin Demir")
    first = rows.nth(0)
    first.get_by_placeholder("Notiz (optional)").fill("Mailbox, nicht erreicht")
    first.get_by_role("button", name="Nicht erreicht").click()
    expect(page.locator("#callbacks tbody tr").nth(0)).to_contain_text("1 Versuch(e) bisher")
    no_serious_violations(page)
    screenshot(page, "callbacks-due")
    page.locator("#callbacks tbody tr").nth(0).get_by_role("button", name="Erreicht",
                                                           exact=True).click()
    expect(page.locator("#callbacks tbody tr")).to_have_count(2)
    expect(page.locator("#callbacks")).not_to_contain_text("Jonas Keller")


def test_a_follow_up_comes_back_on_its_day(page: Page, office: Office) -> None:
    with opened(office.settings) as sessions, session_scope(sessions) as s:
        ticket_id, number = create_ticket(
            s, office.master, mailbox_id=office.mailbox_id, requester="tagesmutter@web.example",
            subject="Frage zur Pflegeerlaubnis", actor="tagesmutter@web.example",
            now=office.clock())
    log_in(page, office)
    page.goto(f"{office.url}/tickets/{ticket_id}")
    in_two_days = office_day(office.clock()) + timedelta(days=2)
    page.get_by_label("Wiedervorlage am").fill(in_two_days.isoformat())
    page.get_by_label("Notiz", exact=True).fill("Ist die Erlaubnis inzwischen da?")
    page.get_by_role("button", name="Wiedervorlage setzen").click()
    expect(page.locator("#ticket-follow-up")).to_contain_text(in_two_days.strftime("%d.%m.%Y"))
    page.goto(f"{office.url}/hotline/{office.mailbox_id}/follow-ups")
    expect(page.locator("#follow-ups")).to_have_text("Heute ist keine Wiedervorlage fällig.")

    office.clock.advance(2 * 86400)  # two days later: a new login
    log_in(page, office)
    page.goto(f"{office.url}/hotline/{office.mailbox_id}/follow-ups")
    row = page.locator("#follow-ups tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(number)
    expect(row).to_contain_text("Ist die Erlaubnis inzwischen da?")
    no_serious_violations(page)
    screenshot(page, "follow-ups")
    page.get_by_role("link", name="Vorgänge").click()
    expect(page.locator("#tickets tr", has_text=number).locator(".mark-follow-up")
           ).to_have_text("Wiedervorlage fällig")
    page.goto(f"{office.url}/tickets/{ticket_id}")
    page.get_by_role("button", name="Wiedervorlage erledigt").click()
    page.goto(f"{office.url}/hotline/{office.mailbox_id}/follow-ups")
    expect(page.locator("#follow-ups")).to_have_text("Heute ist keine Wiedervorlage fällig.")
