"""The hotline on a real database (SQLite and PostgreSQL): calls as tickets, callbacks,
follow-ups with the clock moved, the morning digest once per day, links and merges (mail to
a merged duplicate lands in the survivor, through the real worker)."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime, timedelta
from email import policy

import pytest
from sqlalchemy import func, select

from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.delivery.notices import ENGLISH_SEPARATOR
from gateway.models import AuditEntry, Message, StaffAddress
from gateway.services import Services
from gateway.settings import RelayRoute
from gateway.staff.users import add_user, find_user
from mailboxes.directory import add_mailbox
from mailboxes.hotline.callbacks import callbacks_due, get_call, record_attempt
from mailboxes.hotline.calls import CallForm, log_call, open_tickets_of
from mailboxes.hotline.digest import digest_notice, send_digests
from mailboxes.hotline.follow_ups import (
    DueFollowUp,
    clear_follow_up,
    due_follow_ups,
    due_marks,
    follow_up_of,
    set_follow_up,
)
from mailboxes.hotline.links import link, links_of, merge
from mailboxes.hotline.models import Call, FollowUp
from mailboxes.hotline.phone import parse_number
from mailboxes.hotline.topics import add_topic, list_topics, remove_topic
from mailboxes.members import add_member
from mailboxes.models import Mailbox, MemberRole
from mailboxes.tickets.models import Ticket, TicketState
from mailboxes.tickets.queries import TicketFilter, list_tickets, ticket_view
from mailboxes.tickets.records import assign, get_ticket
from mailboxes.tickets.states import TicketError
from tests.support.pipeline import drain, enqueue

BOX = "kita@jugendamt.example"
OTHER = "asd@jugendamt.example"
PASSWORD = "a long enough passphrase 1"
# A Tuesday morning in Cologne (UTC+1).
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
def box(services: Services, clock: FakeClock) -> Mailbox:
    clock.now = START
    with session_scope(services.sessions) as s:
        mailbox = add_mailbox(s, BOX, "Kindertagespflege")
        add_mailbox(s, OTHER, "ASD")
        for name in ("anna", "bert", "zoe"):
            add_user(s, name, PASSWORD)
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=START)
        add_member(s, BOX, "bert", MemberRole.LEAD, actor="t", now=START)
        add_member(s, OTHER, "zoe", MemberRole.AGENT, actor="t", now=START)
        add_topic(s, mailbox, "Betreuungsvertrag", actor="bert")
        add_topic(s, mailbox, "Geldleistung", actor="bert")
        s.expunge(mailbox)
    return mailbox


def form(**changes: object) -> CallForm:
    values: dict[str, object] = {
        "caller": "Petra Sonnenschein", "role": "childminder", "number": "0221 / 123 45-6",
        "topic": "Betreuungsvertrag", "notes": "Fragt nach der Vertretungsregel.",
        "case_ref": "51.2-2026-17", "callback_due": START + timedelta(hours=3)}
    values.update(changes)
    return CallForm(**values)  # type: ignore[arg-type]


def actions(services: Services) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_phone_numbers() -> None:
    assert parse_number("  +49 (221) 123-45 ") == "+49 (221) 123-45"
    assert parse_number("0221/12345") == "0221/12345"
    for bad, key in [("", "phone_missing"), ("0221 abc 12345", "phone_invalid"),
                     ("12-34", "phone_short"), ("49+221123456", "phone_invalid"),
                     ("1" * 41, "phone_long")]:
        with pytest.raises(TicketError) as refused:
            parse_number(bad)
        assert refused.value.key == key


def test_a_call_is_a_phone_ticket_in_the_list_sealed_and_audited(
        services: Services, box: Mailbox) -> None:
    with session_scope(services.sessions) as s:
        logged = log_call(s, services.master_key, box, form(), actor="anna", now=START)
    assert logged.new_ticket and logged.number == "XG-2026-000001"
    with read_scope(services.sessions) as s:
        ticket = s.get(Ticket, logged.ticket_id)
        call = s.get(Call, logged.call_id)
        assert ticket is not None and call is not None
        assert ticket.channel == "phone" and ticket.state == TicketState.NEW
        for clear in (b"Petra", b"Sonnenschein", b"123 45", b"51.2-2026"):
            assert clear not in call.details_sealed and clear not in ticket.subject_sealed
        # Found by a word of the caller's name (blind index), in the same list as mail.
        page = list_tickets(s, services.master_key, box.id, TicketFilter(search="sonnenschein"))
        assert [r.number for r in page.rows] == [logged.number]
        assert page.rows[0].subject == "Anruf: Petra Sonnenschein - Betreuungsvertrag"
        view = ticket_view(s, services.master_key, ticket.id)
        assert [a.kind for a in view.articles] == ["note"]
        assert [h.action for h in view.history] == ["created", "call", "note"]
    assert actions(services)[-1] == "call-logged"


@pytest.mark.parametrize("changes, key", [
    ({"number": "ruf mich an"}, "phone_invalid"),
    ({"number": "1234"}, "phone_short"),
    ({"caller": "x" * 201}, "caller_long"),
    ({"caller": "  "}, "caller_missing"),
    ({"role": "neighbour"}, "caller_role"),
    ({"topic": "Urlaub"}, "topic_unknown"),
    ({"case_ref": "A" * 65}, "case_ref_long"),
    ({"notes": "n" * 20_001}, "note_long"),
    ({"callback_due": START - timedelta(minutes=1)}, "callback_past"),
])
def test_bad_call_input_is_refused_and_nothing_is_stored(
        services: Services, box: Mailbox, changes: dict[str, object], key: str) -> None:
    before = actions(services)
    with pytest.raises(TicketError) as refused, session_scope(services.sessions) as s:
        log_call(s, services.master_key, box, form(**changes), actor="anna", now=START)
    assert refused.value.key == key
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0
        assert s.scalar(select(func.count()).select_from(Call)) == 0
    assert actions(services) == before


def test_a_second_call_finds_the_callers_open_ticket_and_attaches(
        services: Services, box: Mailbox) -> None:
    with session_scope(services.sessions) as s:
        first = log_call(s, services.master_key, box, form(callback_due=None),
                         actor="anna", now=START)
    with read_scope(services.sessions) as s:
        by_number = open_tickets_of(s, services.master_key, box.id, number="0221123456")
        by_name = open_tickets_of(s, services.master_key, box.id, caller="petra sonnenschein")
        other_box = open_tickets_of(s, services.master_key, box.id + 1, number="0221123456")
        nobody = open_tickets_of(s, services.master_key, box.id, number="0228 99999")
    assert [m.number for m in by_number] == [first.number] == [m.number for m in by_name]
    assert other_box == [] and nobody == []
    with session_scope(services.sessions) as s:
        again = log_call(s, services.master_key, box, form(caller="P. Sonnenschein"),
                         actor="anna", now=START, attach_to=first.ticket_id)
    assert not again.new_ticket and again.ticket_id == first.ticket_id
    with session_scope(services.sessions) as s:
        # A ticket of another mailbox is not offered and cannot be attached to.
        with pytest.raises(TicketError, match="no ticket"):
            other = s.scalars(select(Mailbox).where(Mailbox.address == OTHER)).one()
            log_call(s, services.master_key, other, form(topic=None), actor="zoe",
                     now=START, attach_to=first.ticket_id)


def test_callbacks_due_sorted_with_holder_attempts_and_closing(
        services: Services, box: Mailbox, clock: FakeClock) -> None:
    master = services.master_key
    with session_scope(services.sessions) as s:
        late = log_call(s, master, box, form(caller="Spät", number="0221 55555",
                                             callback_due=START + timedelta(hours=5)),
                        actor="anna", now=START)
        soon = log_call(s, master, box, form(caller="Früh", number="0221 66666",
                                             callback_due=START + timedelta(hours=1)),
                        actor="anna", now=START)
        log_call(s, master, box, form(caller="Ohne", number="0221 77777", callback_due=None),
                 actor="anna", now=START)
        assign(s, get_ticket(s, late.ticket_id), "anna", actor="bert", now=START)
    with read_scope(services.sessions) as s:
        due = callbacks_due(s, master, box.id)
        anna = find_user(s, "anna")
        assert anna is not None
        mine = callbacks_due(s, master, box.id, holder_id=anna.id)
    assert [(d.caller, d.holder, d.number) for d in due] == [
        ("Früh", None, "0221 66666"), ("Spät", "anna", "0221 55555")]
    assert [d.call_id for d in mine] == [late.call_id]
    clock.advance(1800)
    with session_scope(services.sessions) as s:
        call = get_call(s, soon.call_id)
        with pytest.raises(TicketError) as refused:
            record_attempt(s, master, call, reached=False, new_due=START, actor="anna",
                           now=clock())
        assert refused.value.key == "callback_past"
        record_attempt(s, master, call, reached=False, note="Mailbox, kein Anschluss",
                       new_due=START + timedelta(hours=6), actor="anna", now=clock())
    with read_scope(services.sessions) as s:
        due = callbacks_due(s, master, box.id)
    assert [(d.caller, d.attempts) for d in due] == [("Spät", 0), ("Früh", 1)]
    with session_scope(services.sessions) as s:
        record_attempt(s, master, get_call(s, soon.call_id), reached=True, actor="anna",
                       now=clock())
    with session_scope(services.sessions) as s:
        assert [d.caller for d in callbacks_due(s, master, box.id)] == ["Spät"]
        with pytest.raises(TicketError, match="no callback due"):
            record_attempt(s, master, get_call(s, soon.call_id), reached=True, actor="anna",
                           now=clock())
        view = ticket_view(s, master, soon.ticket_id)
        assert [h.action for h in view.history][-2:] == ["callback", "callback"]
    assert actions(services).count("callback-attempted") == 2


def test_a_follow_up_comes_back_on_its_day(services: Services, box: Mailbox,
                                           clock: FakeClock) -> None:
    master = services.master_key
    with session_scope(services.sessions) as s:
        logged = log_call(s, master, box, form(callback_due=None), actor="anna", now=START)
        ticket = get_ticket(s, logged.ticket_id)
        anna = find_user(s, "anna")
        assert anna is not None
        anna_id = anna.id
        with pytest.raises(TicketError) as refused:
            set_follow_up(s, master, ticket, date(2026, 3, 9), "zu spät", actor="anna",
                          actor_id=anna_id, now=START)
        assert refused.value.key == "follow_up_past"
        set_follow_up(s, master, ticket, date(2026, 3, 12), "Vertrag da?", actor="anna",
                      actor_id=anna_id, now=START)
    with read_scope(services.sessions) as s:
        assert due_follow_ups(s, master, today=date(2026, 3, 10), holder_id=anna_id) == []
        assert due_marks(s, [logged.ticket_id], today=date(2026, 3, 10)) == set()
    clock.now = START + timedelta(days=2)
    with read_scope(services.sessions) as s:
        (due,) = due_follow_ups(s, master, today=date(2026, 3, 12), holder_id=anna_id)
        assert due.note == "Vertrag da?" and due.holder == "anna"
        assert due_marks(s, [logged.ticket_id], today=date(2026, 3, 12)) == {logged.ticket_id}
        view = follow_up_of(s, master, get_ticket(s, logged.ticket_id), now=clock())
        assert view is not None and view.due
        raw = s.get(FollowUp, logged.ticket_id)
        assert raw is not None and raw.note_sealed and b"Vertrag" not in raw.note_sealed
    with session_scope(services.sessions) as s:
        # Given to bert, the ticket takes its follow-up along to his list.
        assign(s, get_ticket(s, logged.ticket_id), "bert", actor="anna", now=clock())
    with read_scope(services.sessions) as s:
        assert due_follow_ups(s, master, today=date(2026, 3, 12), holder_id=anna_id) == []
        bert = find_user(s, "bert")
        assert bert is not None
        (due,) = due_follow_ups(s, master, today=date(2026, 3, 12), holder_id=bert.id)
        assert due.holder == "bert"
    with session_scope(services.sessions) as s:
        assert clear_follow_up(s, get_ticket(s, logged.ticket_id), actor="anna", now=clock())
        assert not clear_follow_up(s, get_ticket(s, logged.ticket_id), actor="anna",
                                   now=clock())
    with read_scope(services.sessions) as s:
        assert due_follow_ups(s, master, today=date(2026, 3, 12), holder_id=anna_id) == []
    assert [a for a in actions(services) if a.startswith("follow-up")] == [
        "follow-up-set", "follow-up-cleared"]


def test_the_digest_text_is_german_first() -> None:
    due = [DueFollowUp(1, "XG-2026-000001", 1, BOX, None, date(2026, 3, 9), "anna", None),
           DueFollowUp(2, "XG-2026-000002", 1, BOX, None, date(2026, 3, 10), "anna", None)]
    notice = digest_notice("anna", date(2026, 3, 10), due)
    german, english = notice.text.split(ENGLISH_SEPARATOR)
    assert "2 Wiedervorlage(n)" in german and "fällig seit 09.03.2026" in german
    assert "heute fällig" in german and "due today" in english
    assert "XG-2026-000002" in german and "XG-2026-000002" in english


def test_the_digest_goes_once_a_day_to_each_holder(services: Services, box: Mailbox,
                                                   clock: FakeClock) -> None:
    master = services.master_key
    with session_scope(services.sessions) as s:
        users = {n: find_user(s, n) for n in ("anna", "bert")}
        s.add(StaffAddress(user_id=users["anna"].id, address="anna@jugendamt.example"))  # type: ignore[union-attr]
        # bert only has the team's function address, which anna shares: no digest to it.
        s.add(StaffAddress(user_id=users["bert"].id, address="team@jugendamt.example"))  # type: ignore[union-attr]
        s.add(StaffAddress(user_id=users["anna"].id, address="team@jugendamt.example"))  # type: ignore[union-attr]
        for who in ("anna", "bert"):
            logged = log_call(s, master, box, form(callback_due=None), actor=who, now=START)
            set_follow_up(s, master, get_ticket(s, logged.ticket_id), date(2026, 3, 11),
                          actor=who, actor_id=users[who].id, now=START)  # type: ignore[union-attr]
    with session_scope(services.sessions) as s:
        assert send_digests(s, master, services.settings, now=START, actor="scheduler") == []
    clock.now = START + timedelta(days=1)
    for _ in range(2):  # a second run (another worker, a retry) sends nothing again
        with session_scope(services.sessions) as s:
            told = send_digests(s, master, services.settings, now=clock(), actor="scheduler")
        assert told in (["anna"], [])
    with read_scope(services.sessions) as s:
        queued = list(s.scalars(select(Message).where(Message.mail_from == "")))
        assert len(queued) == 1
    assert actions(services).count("follow-up-digest-sent") == 1
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    drain(services)
    transport = services.transport
    (sent,) = [d for _, f, rcpt, d in transport.sent if "anna@jugendamt.example" in rcpt]  # type: ignore[attr-defined]
    text = email.message_from_bytes(sent, policy=policy.default).get_body().get_content()  # type: ignore[union-attr]
    assert text.index("Wiedervorlage") < text.index(ENGLISH_SEPARATOR) < text.index("due")
    assert "Vertretungsregel" not in text and "Sonnenschein" not in text
    clock.now = START + timedelta(days=2)  # still due the next day: another digest
    with session_scope(services.sessions) as s:
        assert send_digests(s, master, services.settings, now=clock(), actor="s") == ["anna"]


def _mail(subject: str, msgid: str, extra: str = "") -> bytes:
    return (f"From: Petra <petra@web.example>\r\nTo: {BOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}@web.example>\r\n{extra}\r\nHallo.\r\n").encode()


def test_link_and_merge_and_mail_to_the_duplicate_lands_in_the_survivor(
        services: Services, box: Mailbox) -> None:
    master = services.master_key
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    with session_scope(services.sessions) as s:
        call = log_call(s, master, box, form(callback_due=None), actor="anna", now=START)
    enqueue(services, [BOX], _mail("Vertrag", "m1"), mail_from="petra@web.example")
    drain(services)
    with session_scope(services.sessions) as s:
        mail_ticket = s.scalars(select(Ticket).where(Ticket.channel == "mail")).one()
        phone_ticket = get_ticket(s, call.ticket_id)
        assert link(s, phone_ticket, mail_ticket, actor="anna", now=START)
        assert not link(s, mail_ticket, phone_ticket, actor="anna", now=START)
        other = log_call(s, master, s.scalars(select(Mailbox).where(
            Mailbox.address == OTHER)).one(), form(topic=None), actor="zoe", now=START)
        with pytest.raises(TicketError) as refused:
            link(s, phone_ticket, get_ticket(s, other.ticket_id), actor="anna", now=START)
        assert refused.value.key == "link_unknown"
        mail_id = mail_ticket.id
    with session_scope(services.sessions) as s:
        set_follow_up(s, master, get_ticket(s, mail_id), date(2026, 3, 12), "Unterlagen?",
                      actor="anna", actor_id=None, now=START)
        assert [x.number for x in links_of(s, call.ticket_id)] == [
            get_ticket(s, mail_id).number]
        merge(s, master, get_ticket(s, mail_id), get_ticket(s, call.ticket_id), actor="anna",
              now=START)
        with pytest.raises(TicketError) as refused:
            merge(s, master, get_ticket(s, mail_id), get_ticket(s, call.ticket_id), actor="anna",
                  now=START)
        assert refused.value.key == "merged_already"
    # Petra answers her first mail: it threads into the merged one, and lands in the survivor.
    enqueue(services, [BOX], _mail("Re: Vertrag", "m2", "In-Reply-To: <m1@web.example>\r\n"),
            mail_from="petra@web.example")
    drain(services)
    with read_scope(services.sessions) as s:
        duplicate = get_ticket(s, mail_id)
        assert duplicate.state == TicketState.CLOSED and duplicate.merged_into_id == call.ticket_id
        survivor = ticket_view(s, master, call.ticket_id)
        assert [a.kind for a in survivor.articles] == ["note", "inbound"]
        assert [h.action for h in survivor.history][-3:] == ["linked", "merged-from", "mail-in"]
        assert [(x.number, x.merged) for x in links_of(s, call.ticket_id)] == [
            (duplicate.number, True)]
        assert s.scalar(select(func.count()).select_from(Ticket)) == 3
        # The duplicate's follow-up moved to the survivor, its note sealed again for it.
        moved = follow_up_of(s, master, get_ticket(s, call.ticket_id), now=START)
        assert moved is not None and moved.note == "Unterlagen?"
    assert {"tickets-linked", "ticket-merged"} <= set(actions(services))


def test_topics_catalogue(services: Services, box: Mailbox) -> None:
    with session_scope(services.sessions) as s:
        mailbox = s.get(Mailbox, box.id)
        assert mailbox is not None
        assert not add_topic(s, mailbox, " Betreuungsvertrag ", actor="bert")
        with pytest.raises(TicketError):
            add_topic(s, mailbox, "x" * 101, actor="bert")
        assert remove_topic(s, mailbox, "Geldleistung", actor="bert")
        assert not remove_topic(s, mailbox, "Geldleistung", actor="bert")
        assert list_topics(s, box.id) == ["Betreuungsvertrag"]
    assert actions(services).count("mailbox-topic-added") == 2


def test_the_scheduler_of_two_workers_sends_the_morning_digest_once(
        services: Services, box: Mailbox, clock: FakeClock) -> None:
    from mailboxes.hotline import jobs as hotline_jobs
    from mailboxes.scheduler.runner import Scheduler

    master = services.master_key
    with session_scope(services.sessions) as s:
        anna = find_user(s, "anna")
        assert anna is not None
        s.add(StaffAddress(user_id=anna.id, address="anna@jugendamt.example"))
        logged = log_call(s, master, box, form(callback_due=None), actor="anna", now=START)
        set_follow_up(s, master, get_ticket(s, logged.ticket_id), date(2026, 3, 11),
                      actor="anna", actor_id=anna.id, now=START)
    workers = [Scheduler(services.settings, services.sessions, master, clock,
                         owner=f"worker:{n}", jobs=hotline_jobs.JOBS) for n in (1, 2)]
    # The first look runs the job once (nothing due today), then it is due at 07:00.
    assert [name for w in workers for name in w.tick()] == ["follow-up-digest"]
    clock.now = datetime(2026, 3, 11, 5, 59, tzinfo=UTC)  # 06:59 in Cologne
    assert [w.tick() for w in workers] == [[], []]
    clock.now = datetime(2026, 3, 11, 6, 0, 30, tzinfo=UTC)
    assert [name for w in workers for name in w.tick()] == ["follow-up-digest"]
    with read_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Message)
                        .where(Message.mail_from == "")) == 1
