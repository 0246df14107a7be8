"""The console's transfer search and timeline over HTTP, on SQLite and PostgreSQL: mail run
through the real pipeline (real clamd: a clean message filed into a shared mailbox, EICAR
quarantined) and an outbound report with a case reference; every filter, keyset paging with
its hard maximum, bad input named on the page, the roles (admin, auditor, DPO yes; a
caseworker 403), unknown queue ids 404, and every timeline viewed recorded in the trail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from admin_ui.app import create_app
from gateway.audit import AuditAction
from gateway.audit.view import all_entries
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.keydir.partners import add_partner
from gateway.models import Direction, Message
from gateway.services import Services
from gateway.settings import RelayRoute
from gateway.web.templates import office_time
from mailboxes.directory import add_mailbox
from tests.support.clamd import EICAR
from tests.support.console_web import add_console_staff, console_login
from tests.support.pipeline import drain, enqueue
from tests.support.staff_web import BASE_URL
from tests.support.ticket_web import BOX, CITIZEN, mail

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PARTNER_ADDRESS = "asd@jugendamt-b.example"
CASE = "51.2 - 0815/26"


@dataclass(frozen=True)
class Traffic:
    clean: str  # inbound from CITIZEN, filed into BOX
    infected: str  # inbound with EICAR, quarantined
    report: str  # outbound to the partner, with CASE, not yet processed
    mailbox_id: int


def queued(services: Services, data: bytes, *, to: str, sender: str,
           direction: Direction = Direction.INBOUND) -> str:
    return enqueue(services, [to], data, mail_from=sender, direction=direction)


@pytest.fixture
def traffic(services: Services, clock: FakeClock) -> Traffic:
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kindertagespflege")
        add_partner(s, "Jugendamt B", actor="test", now=clock(),
                    patterns=["jugendamt-b.example"])
        box_id = box.id
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    clean = queued(services, mail("Frage", msgid="c1"), to=BOX, sender=CITIZEN)
    infected = queued(services, mail("Rechnung", msgid="v1", sender="virus@web.example",
                                     attachment=EICAR), to=BOX, sender="virus@web.example")
    drain(services)
    report = queued(services, mail("Bericht", to=PARTNER_ADDRESS, msgid="r1",
                                   sender="anna@jugendamt.example"),
                    to=PARTNER_ADDRESS, sender="Anna@Jugendamt.example",
                    direction=Direction.OUTBOUND)
    with session_scope(services.sessions) as s:
        # What the consent gate sets when it finds the case (gateway.pipeline.stages.consent).
        s.execute(update(Message).where(Message.queue_id == report)
                  .values(case_reference="51.2 - 0815/26".casefold()))
    return Traffic(clean, infected, report, box_id)


@pytest.fixture
def secrets(services: Services) -> dict[str, str]:
    return add_console_staff(services)


@pytest.fixture
def client(services: Services, clock: FakeClock, secrets: dict[str, str],
           traffic: Traffic) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, clock=clock), base_url=BASE_URL) as c:
        console_login(c, secrets, clock, "dora")
        yield c


def found(page: str) -> list[str]:
    """The queue ids of the result table, in order."""
    return re.findall(r'<a href="/console/transfers/([0-9A-F]+)">', page)


def test_every_console_reader_may_search_and_read_a_timeline_a_caseworker_not(
        client: TestClient, secrets: dict[str, str], clock: FakeClock,
        traffic: Traffic) -> None:
    for user, status in (("root", 200), ("dora", 200), ("dpo", 200), ("anna", 403)):
        console_login(client, secrets, clock, user)
        assert client.get("/console/transfers").status_code == status, user
        assert client.get(f"/console/transfers?address={CITIZEN}").status_code == status
        assert client.get(f"/console/transfers/{traffic.clean}").status_code == status, user
    client.cookies.clear()
    assert client.get("/console/transfers", follow_redirects=False).status_code in (303, 401)


# Each case: the search's parameters, the messages it finds (newest first). One app and one
# set of mail for all (each set-up runs the pipeline with clamd).
FILTER_CASES: list[tuple[dict[str, str], list[str]]] = [
    ({"case_reference": "51.2 -  0815/26"}, ["report"]),
    ({"case_reference": "51.2 - 0815/27"}, []),
    # The citizen also got the new ticket's receipt (outbound): inbound only here.
    ({"address": CITIZEN.upper(), "direction": "inbound"}, ["clean"]),
    ({"address": "anna@jugendamt.example"}, ["report"]),  # the sender, whatever its case
    ({"address": PARTNER_ADDRESS}, ["report"]),  # a recipient
    ({"partner": "Jugendamt B"}, ["report"]),
    ({"partner": "Jugendamt B", "address": PARTNER_ADDRESS}, ["report"]),
    ({"partner": "Jugendamt B", "address": CITIZEN}, []),
    ({"state": "quarantined"}, ["infected"]),
    ({"verdict": "infected"}, ["infected"]),
    ({"verdict": "clean", "address": CITIZEN, "direction": "inbound"}, ["clean"]),
    ({"direction": "outbound", "address": PARTNER_ADDRESS}, ["report"]),
    ({"direction": "inbound", "address": PARTNER_ADDRESS}, []),
    ({"address": CITIZEN, "state": "delivered", "direction": "inbound"}, ["clean"]),
]


def test_each_filter_finds_its_messages(client: TestClient, traffic: Traffic) -> None:
    for params, expected in FILTER_CASES:
        page = client.get("/console/transfers", params=params)
        assert page.status_code == 200, params
        assert found(page.text) == [getattr(traffic, name) for name in expected], params
        if not expected:
            assert 'id="no-results"' in page.text, params


def test_mailbox_and_date_range(client: TestClient, services: Services,
                                traffic: Traffic) -> None:
    by_box = found(client.get("/console/transfers",
                              params={"mailbox": traffic.mailbox_id,
                                      "direction": "inbound"}).text)
    assert by_box == [traffic.infected, traffic.clean]
    # The day it arrived on the office's calendar, not the clock's day now: logins move the
    # clock on, and near midnight in Berlin the two differ.
    with read_scope(services.sessions) as s:
        received = s.scalars(select(Message.received_at)
                             .where(Message.queue_id == traffic.report)).one()
    today = office_time(received).date()
    within = {"received_from": today.isoformat(), "received_to": today.isoformat()}
    assert traffic.report in found(client.get("/console/transfers", params=within).text)
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = {"received_from": tomorrow, "received_to": tomorrow}
    assert found(client.get("/console/transfers", params=later).text) == []


BAD_INPUT: list[tuple[dict[str, str], str]] = [
    ({"received_from": "2026-12-04", "received_to": "2026-12-01"},
     "Der Zeitraum endet (2026-12-01) vor seinem Beginn (2026-12-04)."),
    ({"state": "verschwunden"}, "Einen Stand „verschwunden“ gibt es nicht."),
    ({"verdict": "harmless"}, "Ein Prüfergebnis „harmless“ gibt es nicht."),
    ({"direction": "sideways"}, "Eine Richtung „sideways“ gibt es nicht."),
    ({"received_from": "4.12.2026"}, "„4.12.2026“ ist kein Datum (Feld Eingegangen ab)"),
    ({"size": "100000"}, "Eine Seite zeigt höchstens 200 Nachrichten."),
    ({"before": "x1"}, "„x1“ ist keine gültige Zahl (Feld Seite)."),
    ({"address": "a" * 400}, "Das Feld Adresse ist zu lang"),
]


def test_bad_input_is_named_on_the_page(client: TestClient) -> None:
    for params, message in BAD_INPUT:
        page = client.get("/console/transfers", params=params)
        assert page.status_code == 400, params
        assert 'id="search-error"' in page.text and message in page.text, params
        assert 'id="results"' not in page.text, params


def test_pages_are_keyset_pages_of_at_most_the_size_asked(
        client: TestClient, services: Services, traffic: Traffic) -> None:
    more = [queued(services, mail(f"Nr. {n}", msgid=f"p{n}"), to=BOX, sender=CITIZEN)
            for n in range(4)]
    newest_first = [*reversed(more), traffic.clean]
    shown: list[str] = []
    link = f"/console/transfers?address={CITIZEN}&direction=inbound&size=2"
    pages = 0
    while link:
        page = client.get(link.replace("&amp;", "&"))
        assert page.status_code == 200
        ids = found(page.text)
        assert 1 <= len(ids) <= 2
        shown += ids
        pages += 1
        next_link = re.search(r'href="([^"]+)" id="next-page"', page.text)
        link = next_link.group(1) if next_link else ""
        if pages > 1:
            assert 'id="first-page"' in page.text
    assert shown == newest_first and pages == 3


def test_the_timeline_shows_the_journey_without_content_and_is_audited(
        client: TestClient, services: Services, traffic: Traffic) -> None:
    page = client.get(f"/console/transfers/{traffic.infected.lower()}")
    assert page.status_code == 200
    text = page.text
    assert 'data-action="received"' in text and 'data-action="quarantined"' in text
    assert 'data-aspect="scan"' in text and "Xgate.Test.EICAR" in text
    assert "virus@web.example" in text and BOX in text
    assert "X5O!P%@AP" not in text and "Hallo, eine Frage." not in text
    clean = client.get(f"/console/transfers/{traffic.clean}").text
    assert 'data-action="delivered"' in clean
    assert 'data-aspect="delivery"' in clean and 'data-aspect="received"' in clean
    with read_scope(services.sessions) as s:
        reads = [e for e in all_entries(s) if e.action == AuditAction.TRANSFER_TIMELINE_READ]
    assert [(e.actor, e.queue_id) for e in reads] == [("user:dora", traffic.infected),
                                                      ("user:dora", traffic.clean)]


def test_an_unknown_queue_id_is_404_and_nothing_recorded(client: TestClient,
                                                         services: Services) -> None:
    for queue_id in ("0123456789ABCDEF", "nicht-da", "A" * 40, "%20"):
        assert client.get(f"/console/transfers/{queue_id}").status_code == 404, queue_id
    with read_scope(services.sessions) as s:
        assert not s.scalars(select(Message.id).where(Message.queue_id == "0123456789ABCDEF")
                             ).first()
        assert not [e for e in all_entries(s)
                    if e.action == AuditAction.TRANSFER_TIMELINE_READ]


def test_a_mailbox_that_does_not_exist_finds_nothing(client: TestClient,
                                                     traffic: Traffic) -> None:
    page = client.get("/console/transfers", params={"mailbox": traffic.mailbox_id + 99})
    assert page.status_code == 200 and found(page.text) == [] and 'id="no-results"' in page.text
    both = client.get("/console/transfers", params={"mailbox": traffic.mailbox_id,
                                                     "address": CITIZEN,
                                                     "direction": "inbound"})
    assert found(both.text) == [traffic.clean]


def test_the_pages_in_english(client: TestClient, traffic: Traffic) -> None:
    english = {"Accept-Language": "en"}
    page = client.get("/console/transfers", params={"state": "quarantined"}, headers=english)
    assert "<h1>Transfers</h1>" in page.text and "quarantined" in page.text
    assert "There is no state" in client.get("/console/transfers", params={"state": "x"},
                                             headers=english).text
    journey = client.get(f"/console/transfers/{traffic.infected}", headers=english).text
    assert f"Journey of message {traffic.infected}" in journey and "Scan verdict" in journey
