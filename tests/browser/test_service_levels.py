"""A breached deadline shown to the mailbox's lead in a real browser (chromium), the app's
clock mocked: the scheduler's SLA pass marks the ticket and escalates it; the lead sees the
mark in the ticket list, the escalation on the findings page linking the ticket, and the due
time on the ticket page. Accessibility (axe-core) of the findings and settings pages; the
screenshots sla-findings and sla-settings for the README."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from crypto.at_rest import MasterKey
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.settings import Settings
from gateway.staff.users import add_address, add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.scheduler.runner import Scheduler
from mailboxes.service_levels import config
from mailboxes.service_levels import jobs as service_level_jobs
from mailboxes.service_levels.business_hours import OFFICE_TIME
from mailboxes.service_levels.models import TicketServiceLevel
from mailboxes.tickets.records import create_ticket
from tests.browser import pages
from tests.browser.conftest import screenshot
from tests.browser.pages import no_serious_violations
from tests.support.db import opened
from tests.support.staff_web import enrol
from tests.support.web import serving_web_app

pytestmark = pytest.mark.browser

BOX = "kita@jugendamt.example"
LEAD = "l.lehmann"
PASSWORD = "ein sehr langes passwort"


@dataclass(frozen=True)
class Office:
    url: str
    clock: FakeClock
    scheduler: Scheduler
    secret: str
    settings: Settings
    mailbox_id: int
    ticket_id: int
    number: str


@pytest.fixture
def office(web_settings: Settings) -> Iterator[Office]:
    clock = FakeClock()   # the real time, so the TOTP codes computed for it are valid
    master = MasterKey.load(web_settings.resolve(web_settings.storage.master_key_file))
    with opened(web_settings) as sessions:
        with session_scope(sessions) as s:
            box = add_mailbox(s, BOX, "Kindertagespflege")
            add_user(s, LEAD, PASSWORD)
            add_address(s, LEAD, "l.lehmann@jugendamt.example")
            add_member(s, BOX, LEAD, MemberRole.LEAD, actor="test", now=clock())
            # Open day and night, so the deadline falls within the test whatever the day.
            form = config.default_form()
            form.hours = {d: "00:00-24:00" for d in config.DAY_NAMES}
            form.first_response_hours, form.resolution_hours = "1", "8"
            form.warning_hours = "0.5"
            config.save(s, box, config.parse_form(form), actor="test", now=clock())
            box_id = box.id
            ticket_id, number = create_ticket(
                s, master, mailbox_id=box.id, requester="tagesmutter@web.example",
                subject="Frage zur Pflegeerlaubnis", actor="tagesmutter@web.example",
                now=clock())
        scheduler = Scheduler(web_settings, sessions, master, clock, owner="worker:test",
                              jobs=service_level_jobs.JOBS)
        secret = enrol(web_settings, LEAD)
        with serving_web_app(web_settings, clock=clock) as port:
            yield Office(f"http://127.0.0.1:{port}", clock, scheduler, secret, web_settings,
                         box_id, ticket_id, number)


def log_in(page: Page, office: Office) -> None:
    # The app's clock has moved on: the code is the one a phone shows at that time.
    pages.log_in(page, office.url, LEAD, PASSWORD, office.secret, at=office.clock())


def test_an_escalation_is_shown_to_the_lead(page: Page, office: Office) -> None:
    office.scheduler.tick()
    with opened(office.settings) as sessions, read_scope(sessions) as s:
        deadlines = s.get(TicketServiceLevel, office.ticket_id)
        assert deadlines is not None and deadlines.first_response_due_at is not None
        due = deadlines.first_response_due_at
    # Past the first-response deadline (one business hour) by a few minutes.
    office.clock.now = due + timedelta(minutes=5)
    assert "sla-pass" in office.scheduler.tick()
    log_in(page, office)
    page.get_by_role("link", name="Kindertagespflege").first.click()
    row = page.locator("#tickets tr", has_text=office.number)
    expect(row.locator(".mark-sla-breached")).to_have_text("Frist überschritten")

    page.get_by_role("link", name="Hinweise und Eskalationen").click()
    expect(page.get_by_role("heading", name="Hinweise und Eskalationen", exact=True)
           ).to_be_visible()
    escalation = page.locator("#escalations tbody tr").first
    expect(escalation).to_contain_text(office.number)
    expect(escalation).to_contain_text("Erste Antwort")
    expect(escalation).to_contain_text(LEAD)
    no_serious_violations(page)
    screenshot(page, "sla-findings")

    escalation.get_by_role("link", name=office.number).click()
    expect(page).to_have_url(f"{office.url}/tickets/{office.ticket_id}")
    expect(page.locator("#sla-first_response")).to_contain_text(
        due.astimezone(OFFICE_TIME).strftime("%d.%m.%Y %H:%M"))
    expect(page.locator("#sla-mark")).to_have_text("Frist überschritten")

    page.goto(f"{office.url}/mailboxes/{office.mailbox_id}/service-levels")
    expect(page.get_by_label("Montag")).to_have_value("00:00-24:00")
    no_serious_violations(page)
    screenshot(page, "sla-settings")
