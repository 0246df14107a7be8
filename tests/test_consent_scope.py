"""The pieces under the console's consent register, on real SQLite and PostgreSQL and the
real clamd: which mailbox a held report belongs to (a ticket's reply, a mailbox sender, none),
whose releases and reports a user manages (rights.consent_scope), and what a scan may be."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

import pytest

from admin_ui.security.errors import Forbidden
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsentScope, consent_scope
from gateway.clock import FakeClock
from gateway.consent.documents import checked_scan, scan_type
from gateway.consent.errors import ConsentError
from gateway.consent.teams import report_mailboxes
from gateway.db import read_scope, session_scope
from gateway.models import HoldKind
from gateway.services import Services
from gateway.settings import Settings
from gateway.staff.roles import GlobalRole
from mailboxes.directory import find_mailbox
from mailboxes.tickets.models import ArticleKind
from mailboxes.tickets.records import add_article, create_ticket
from tests.support.clamd import EICAR, shared_clamd
from tests.support.consent_web import held_report, partner, small_pdf
from tests.support.ticket_web import BOX, OTHER_BOX, two_teams

pytestmark = pytest.mark.usefixtures("cheap_hashing")

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
CASE = "51.2-1000/2026"


def png() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


@pytest.fixture
def teams(services: Services, clock: FakeClock) -> Services:
    clock.now = NOW
    two_teams(services)
    partner(services)
    return services


def _staff(services: Services, name: str, *roles: GlobalRole) -> Staff:
    from gateway.staff.users import find_user
    with read_scope(services.sessions) as s:
        user = find_user(s, name)
        assert user is not None
        return Staff(user.id, name, frozenset(roles))


def _box(services: Services, address: str) -> int:
    with read_scope(services.sessions) as s:
        box = find_mailbox(s, address)
        assert box is not None
        return box.id


def test_a_held_report_belongs_to_the_mailbox_it_came_from(teams: Services) -> None:
    from_box = held_report(teams, BOX, CASE, auth_user="anna")
    # A reply written on OTHER_BOX's ticket but sent with a personal address.
    reply = held_report(teams, "bert@jugendamt.example", CASE, auth_user="bert",
                        kind=HoldKind.CONSENT)
    personal = held_report(teams, "anna@jugendamt.example", CASE, auth_user="anna")
    with session_scope(teams.sessions) as s:
        ticket_id, _number = create_ticket(s, teams.master_key, mailbox_id=_box(teams, OTHER_BOX),
                                           requester="eltern@web.example", subject="Frage",
                                           actor="test", now=NOW)
        add_article(s, ticket_id, ArticleKind.REPLY, author="bert", now=NOW, queue_id=reply)
    with read_scope(teams.sessions) as s:
        found = report_mailboxes(s, [from_box, reply, personal, "NOPE"])
    assert found == {from_box: frozenset({_box(teams, BOX)}),
                     reply: frozenset({_box(teams, OTHER_BOX)})}


def test_whose_consent_a_user_manages(teams: Services) -> None:
    with read_scope(teams.sessions) as s:
        assert consent_scope(s, _staff(teams, "anna")) == ConsentScope(
            frozenset({_box(teams, BOX)}))
        assert consent_scope(s, _staff(teams, "lena")).covers([_box(teams, BOX)])
        assert not consent_scope(s, _staff(teams, "bert")).covers([_box(teams, BOX), None])
        admin = consent_scope(s, _staff(teams, "root", GlobalRole.ADMIN))
        assert admin.everything and admin.covers([None])
        # An auditor who is also a member: the console's consent area is not theirs.
        with pytest.raises(Forbidden):
            consent_scope(s, _staff(teams, "anna", GlobalRole.AUDITOR))
        # A DPO who is an admin too: every release, as any admin.
        assert consent_scope(s, _staff(teams, "root", GlobalRole.ADMIN,
                                       GlobalRole.DPO)).everything


@pytest.mark.parametrize(("data", "kind"), [
    (small_pdf(), "application/pdf"), (png(), "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32), "image/jpeg"),
    (b"II*\x00\x08\x00\x00\x00" + bytes(16), "image/tiff"),
    (b"MM\x00*\x00\x00\x00\x08" + bytes(16), "image/tiff"),
    (b"GIF89a" + bytes(16), None), (b"<html>%PDF-1.4", None), (b"PK\x03\x04", None),
    (b"", None)])
def test_a_scan_is_recognised_by_its_first_bytes(data: bytes, kind: str | None) -> None:
    assert scan_type(data) == kind


def test_clamd_judges_a_scan_and_its_absence_refuses(settings: Settings) -> None:
    assert checked_scan(settings, png()) == "image/png"
    with pytest.raises(ConsentError) as infected:
        checked_scan(settings, b"%PDF-1.4\n" + EICAR)
    assert infected.value.key == "infected"
    with pytest.raises(ConsentError) as renamed:
        checked_scan(settings, b"MZ\x90\x00 a program called scan.pdf")
    assert renamed.value.key == "not_a_scan"
    # No later scan will look at a stored release form: clamd down is a refusal.
    with shared_clamd().stopped(), pytest.raises(ConsentError) as unscanned:
        checked_scan(settings, small_pdf())
    assert unscanned.value.key == "unscanned"



def test_the_search_shows_at_most_its_limit_and_says_there_is_more(teams: Services) -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from gateway.consent.search import search_releases
    from tests.support.consent_web import recorded, release_input

    box = _box(teams, BOX)
    for number in range(3):
        recorded(teams, release_input(f"51.2-10{number}/2026", subject=f"Kind {number}",
                                      start=date(2026, 3, 1), end=date(2026, 3, 31)), BOX)
    recorded(teams, release_input("51.2-200/2026", start=date(2026, 1, 1),
                                  end=date(2026, 2, 1)), BOX)

    def search(**kw: str | None) -> tuple[list[str], bool]:
        with session_scope(teams.sessions) as s:
            found = search_releases(s, teams.master_key, mailboxes=frozenset({box}),
                                    now=NOW, zone=ZoneInfo("Europe/Berlin"), actor="t",
                                    via="web", limit=2, **{"case": None, "person": None,
                                                           "state": None, **kw})
            return [v.release.case for v in found.releases], found.more

    assert search() == (["51.2-200/2026", "51.2-102/2026"], True)
    assert search(state="active") == (["51.2-102/2026", "51.2-101/2026"], True)
    assert search(state="expired") == (["51.2-200/2026"], False)
    assert search(person="kind 0") == (["51.2-100/2026"], False)
    assert search(person="KIND", state="active") == (["51.2-102/2026", "51.2-101/2026"], True)
    assert search(case="51.2-101/2026") == (["51.2-101/2026"], False)
