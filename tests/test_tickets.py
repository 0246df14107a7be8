"""Tickets on a real database (SQLite and PostgreSQL): numbers, threading through the real
worker, receipts, states, assignment, notes, history, the list, replies and audited reads."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy

import pytest
from sqlalchemy import Engine, event, select

from gateway.db import read_scope, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import AuditEntry, Direction, Message, MessageState
from gateway.services import Services
from gateway.settings import RelayRoute
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.outreach import set_outreach
from mailboxes.tickets.models import ArticleKind, SubjectToken, Ticket, TicketState
from mailboxes.tickets.numbers import allocate_number, numbers_in
from mailboxes.tickets.queries import TicketFilter, list_tickets, ticket_view
from mailboxes.tickets.reads import open_article, open_attachment
from mailboxes.tickets.records import add_note, assign, change_state, find_ticket
from mailboxes.tickets.replies import Attachment, Reply, submit_reply
from mailboxes.tickets.states import TicketError
from tests.support.pipeline import drain, enqueue

BOX = "kita@jugendamt.example"
PASSWORD = "a long enough passphrase 1"


def mail(subject: str, *, sender: str = "tagesmutter@web.example", msgid: str = "m1",
         extra: str = "") -> bytes:
    return (f"From: Tagesmutter <{sender}>\r\nTo: {BOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}@web.example>\r\n{extra}\r\nHallo, eine Frage.\r\n"
            ).encode()


def deliver(services: Services, data: bytes, sender: str = "tagesmutter@web.example") -> None:
    enqueue(services, [BOX], data, mail_from=sender)
    drain(services)


@pytest.fixture
def box(services: Services) -> int:
    with session_scope(services.sessions) as s:
        box_id = add_mailbox(s, BOX, "Kindertagespflege").id
        add_user(s, "anna", PASSWORD)
        add_user(s, "zoe", PASSWORD)
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=services.clock())
    # Receipts and replies leave through the (recording) relay.
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    return box_id


def tickets(services: Services) -> list[Ticket]:
    with read_scope(services.sessions) as s:
        found = list(s.scalars(select(Ticket).order_by(Ticket.id)))
        s.expunge_all()
        return found


def receipts(transport: RecordingTransport) -> list[email.message.EmailMessage]:
    found = []
    for _, mail_from, _, data in transport.sent:
        msg = email.message_from_bytes(data, policy=policy.default)
        if msg["Auto-Submitted"] == "auto-replied":
            assert mail_from == ""
            found.append(msg)
    return found


def test_numbers_have_no_gaps_and_a_rollback_gives_one_back(services: Services) -> None:
    with session_scope(services.sessions) as s:
        assert allocate_number(s, 2026) == "XG-2026-000001"
        assert allocate_number(s, 2026) == "XG-2026-000002"
        assert allocate_number(s, 2027) == "XG-2027-000001"
    with pytest.raises(RuntimeError), session_scope(services.sessions) as s:
        assert allocate_number(s, 2026) == "XG-2026-000003"
        raise RuntimeError("the ticket failed")
    with session_scope(services.sessions) as s:
        assert allocate_number(s, 2026) == "XG-2026-000003"
    assert numbers_in("Re: Frage [xg-2026-000123] und XG-2026-000001") == [
        "XG-2026-000123", "XG-2026-000001"]


def test_new_mail_becomes_a_ticket_with_a_receipt(services: Services, box: int,
                                                   transport: RecordingTransport) -> None:
    deliver(services, mail("Betreuungsvertrag Müller"))
    (ticket,) = tickets(services)
    year = services.clock().year
    assert ticket.number == f"XG-{year}-000001"
    assert ticket.state == TicketState.NEW and ticket.requester == "tagesmutter@web.example"
    assert b"Betreuungsvertrag" not in ticket.subject_sealed
    drain(services)  # the receipt, through the outbound pipeline
    (receipt,) = receipts(transport)
    assert receipt["To"] == "tagesmutter@web.example"
    assert ticket.number in receipt["Subject"]
    assert ticket.number in receipt.get_content()
    assert "Vorgangsnummer" in receipt.get_content()
    assert receipt["In-Reply-To"] == "<m1@web.example>"
    with read_scope(services.sessions) as s:
        view = ticket_view(s, services.master_key, ticket.id)
    assert view.ticket.subject == "Betreuungsvertrag Müller"
    assert [a.kind for a in view.articles] == ["inbound", "receipt"]
    assert view.articles[1].outcome == "sent"
    assert [h.action for h in view.history] == ["created", "receipt-sent"]


def test_replies_and_the_ticket_number_thread_forgery_opens_a_linked_ticket(
        services: Services, box: int, transport: RecordingTransport) -> None:
    deliver(services, mail("Frage zur Anmeldung"))
    drain(services)
    (first,) = tickets(services)
    (receipt,) = receipts(transport)
    # A reply to our receipt threads by In-Reply-To, whatever its subject.
    deliver(services, mail("Antwort", msgid="m2",
                           extra=f"In-Reply-To: {receipt['Message-ID']}\r\n"))
    # The number in the subject, from the requester, threads too.
    deliver(services, mail(f"Nachtrag {first.number}", msgid="m3"))
    assert len(tickets(services)) == 1
    # The same number from someone else opens a new ticket that links to the first.
    deliver(services, mail(f"Wichtig {first.number}", sender="fremd@evil.example",
                           msgid="m4"), sender="fremd@evil.example")
    _, forged = tickets(services)
    assert forged.linked_ticket_id == first.id and forged.requester == "fremd@evil.example"
    with read_scope(services.sessions) as s:
        view = ticket_view(s, services.master_key, first.id)
        assert [a.kind for a in view.articles] == ["inbound", "receipt", "inbound", "inbound"]
        assert view.history[-1].action == "linked-from"
        assert ticket_view(s, services.master_key, forged.id).ticket.linked_to == first.number


@pytest.mark.parametrize("extra, sender", [
    ("Auto-Submitted: auto-replied\r\n", "tagesmutter@web.example"),
    ("Precedence: bulk\r\n", "tagesmutter@web.example"),
    ("List-Id: <kita.lists.example>\r\n", "tagesmutter@web.example"),
    ("", ""),
])
def test_no_receipt_to_automatic_mail_lists_or_the_null_sender(
        services: Services, box: int, transport: RecordingTransport, extra: str,
        sender: str) -> None:
    deliver(services, mail("Automatisch", extra=extra), sender=sender)
    drain(services)
    assert len(tickets(services)) == 1
    assert receipts(transport) == []
    with read_scope(services.sessions) as s:
        history = ticket_view(s, services.master_key, tickets(services)[0].id).history
    assert history[-1].action == "receipt-skipped"


def test_receipts_are_rate_limited_and_can_be_switched_off(
        services: Services, box: int, transport: RecordingTransport) -> None:
    for n in range(5):
        deliver(services, mail(f"Neu {n}", msgid=f"r{n}"))
    drain(services)
    assert len(tickets(services)) == 5
    assert len(receipts(transport)) == 3
    with session_scope(services.sessions) as s:
        set_outreach(s, BOX, actor="t", receipt_enabled=False)
    services.clock.advance(7200)  # type: ignore[attr-defined]
    deliver(services, mail("Noch eine", msgid="r9"))
    drain(services)
    assert len(receipts(transport)) == 3


def test_states_assignment_notes_and_history(services: Services, box: int) -> None:
    deliver(services, mail("Frage"))
    now = services.clock()
    with session_scope(services.sessions) as s:
        ticket = find_ticket(s, tickets(services)[0].number)
        change_state(s, ticket, TicketState.OPEN, actor="anna", now=now)
        with pytest.raises(TicketError, match="cannot go from open to new"):
            change_state(s, ticket, TicketState.NEW, actor="anna", now=now)
        with pytest.raises(TicketError, match="zoe is no member"):
            assign(s, ticket, "zoe", actor="anna", now=now)
        assign(s, ticket, "anna", actor="anna", now=now)
        note_id = add_note(s, services.master_key, ticket, "Rückruf vereinbart", actor="anna",
                           now=now)
        change_state(s, ticket, TicketState.CLOSED, actor="anna", now=now)
        ticket_id = ticket.id
    with session_scope(services.sessions) as s:
        view = ticket_view(s, services.master_key, ticket_id)
        assert view.ticket.assignee == "anna" and view.ticket.state == TicketState.CLOSED
        assert [h.action for h in view.history][-4:] == ["state", "assigned", "note", "state"]
        assert view.history[-1].detail == {"from": "open", "to": "closed"}
        note = open_article(s, services.master_key, ticket_id=ticket_id, article_id=note_id,
                            actor="user:anna")
        assert note.kind == ArticleKind.NOTE and note.data == "Rückruf vereinbart".encode()
    # A mail in reopens a closed ticket.
    deliver(services, mail(f"Noch was {view.ticket.number}", msgid="m5"))
    assert tickets(services)[0].state == TicketState.OPEN


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_list_filters_and_pages_in_a_constant_number_of_statements(
        services: Services, box: int) -> None:
    for n in range(12):
        sender = "eltern@web.example" if n % 3 == 0 else "tagesmutter@web.example"
        deliver(services, mail(f"Antrag Nummer{n} Kita", sender=sender, msgid=f"l{n}"),
                sender=sender)
    now = services.clock()
    with session_scope(services.sessions) as s:
        for t in s.scalars(select(Ticket).order_by(Ticket.id).limit(4)):
            assign(s, t, "anna", actor="anna", now=now)
        anna_id = t.assignee_id
    engine = services.sessions.kw["bind"]
    key = services.master_key
    with read_scope(services.sessions) as s:
        pages = []
        with counted(engine) as small:
            pages.append(list_tickets(s, key, box, limit=2))
        with counted(engine) as large:
            pages.append(list_tickets(s, key, box, limit=10))
        assert len([x for x in small if x.lstrip().upper().startswith("SELECT")]) == 1
        assert len([x for x in large if x.lstrip().upper().startswith("SELECT")]) == 1
        first = pages[1]
        assert [r.subject for r in first.rows][:2] == ["Antrag Nummer11 Kita",
                                                      "Antrag Nummer10 Kita"]
        rest = list_tickets(s, key, box, before=first.next_before, limit=10)
        assert len(rest.rows) == 2 and rest.next_before is None
        assert [r.subject for r in list_tickets(s, key, box, TicketFilter(
            search="nummer7")).rows] == ["Antrag Nummer7 Kita"]
        assert len(list_tickets(s, key, box, TicketFilter(search="kita antrag")).rows) == 12
        assert list_tickets(s, key, box, TicketFilter(search="Nummer7 Krippe")).rows == []
        assert len(list_tickets(s, key, box, TicketFilter(search="eltern@")).rows) == 4
        assert len(list_tickets(s, key, box, TicketFilter(unassigned=True)).rows) == 8
        assert len(list_tickets(s, key, box, TicketFilter(assignee_id=anna_id)).rows) == 4
        assert len(list_tickets(s, key, box, TicketFilter(state=TicketState.NEW)).rows) == 12
        # Only tokens are stored, never the words.
        assert all(len(t) == 16 for t in s.scalars(select(SubjectToken.token)))


def test_reply_is_queued_as_the_mailbox_and_processed_by_the_worker(
        services: Services, box: int, transport: RecordingTransport) -> None:
    with session_scope(services.sessions) as s:
        set_outreach(s, BOX, actor="t", receipt_enabled=False, signature="Ihr Kita-Team")
    deliver(services, mail("Frage zum Platz"))
    ticket = tickets(services)[0]
    with session_scope(services.sessions) as s:
        with pytest.raises(TicketError, match="zoe is no member"):
            submit_reply(s, services.master_key, Reply(ticket.id, "Hallo"), username="zoe",
                         hostname="xgate.test", max_bytes=1_000_000, now=services.clock())
        sent = submit_reply(s, services.master_key, Reply(
            ticket.id, "Guten Tag, der Platz ist frei.",
            [Attachment("../../etc/Vertrag\x07.pdf", "application/pdf", b"%PDF-1.4 x")]),
            username="anna", hostname="xgate.test", max_bytes=1_000_000,
            now=services.clock())
    with read_scope(services.sessions) as s:
        queued = s.scalars(select(Message).where(Message.queue_id == sent.queue_id)).one()
        assert queued.direction == Direction.OUTBOUND and queued.mail_from == BOX
        assert queued.auth_user == "anna"
    drain(services)
    (_, mail_from, rcpts, data) = transport.sent[-1]
    assert mail_from == BOX and rcpts == ("tagesmutter@web.example",)
    out = email.message_from_bytes(data, policy=policy.default)
    assert out["In-Reply-To"] == "<m1@web.example>"
    assert out["Subject"] == f"Re: Frage zum Platz [{ticket.number}]"
    assert "Ihr Kita-Team" in data.decode("utf-8", "replace")
    assert [p.get_filename() for p in out.iter_attachments()] == ["Vertrag.pdf"]
    with session_scope(services.sessions) as s:
        view = ticket_view(s, services.master_key, ticket.id)
        reply = view.articles[-1]
        assert reply.kind == "reply" and reply.outcome == "sent"
        assert view.ticket.state == TicketState.WAITING
        assert s.scalars(select(Message.state).where(
            Message.queue_id == sent.queue_id)).one() == MessageState.DELIVERED
        got = open_attachment(s, services.master_key, ticket_id=ticket.id,
                              article_id=reply.id, index=0, actor="user:anna")
        assert (got.filename, got.data) == ("Vertrag.pdf", b"%PDF-1.4 x")
        first = open_article(s, services.master_key, ticket_id=ticket.id,
                             article_id=view.articles[0].id, actor="user:anna")
        assert b"Hallo, eine Frage." in first.data
        with pytest.raises(TicketError, match="has no article"):
            open_article(s, services.master_key, ticket_id=ticket.id + 1,
                         article_id=reply.id, actor="user:anna")
        reads = list(s.scalars(select(AuditEntry).where(
            AuditEntry.action == "ticket-content-read")))
        assert len(reads) == 2
        ticket_row = s.get(Ticket, ticket.id)
        assert ticket_row is not None
        # A report of a case goes through the consent gate: without a release it is held,
        # and the ticket shows why.
        held = submit_reply(s, services.master_key, Reply(
            ticket.id, "Der Bericht", case="51.2-1234/2026", category="Gutachten"),
            username="anna", hostname="xgate.test", max_bytes=1_000_000, now=services.clock())
    drain(services)
    with session_scope(services.sessions) as s:
        article = ticket_view(s, services.master_key, ticket.id).articles[-1]
        assert article.queue_id == held.queue_id and article.outcome == "held"
        assert article.reason and "51.2-1234/2026" in article.reason
        ticket_row = s.get(Ticket, ticket.id)
        assert ticket_row is not None
        change_state(s, ticket_row, TicketState.CLOSED, actor="anna", now=services.clock())
        with pytest.raises(TicketError, match="is closed"):
            submit_reply(s, services.master_key, Reply(ticket.id, "Noch etwas"),
                         username="anna", hostname="xgate.test", max_bytes=1_000_000,
                         now=services.clock())


def test_concurrent_allocations_get_distinct_numbers_without_gaps(services: Services) -> None:
    """Eight transactions at once, the year's counter row not there yet: each gets its own
    number, and together they are 1..8 (the lock, and the race for the first row)."""
    import threading

    got: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def allocate() -> None:
        try:
            start.wait()
            with session_scope(services.sessions) as s:
                number = allocate_number(s, 2030)
                time.sleep(0.02)  # hold the lock a while: the others must wait, not pass
            got.append(number)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(got) == [f"XG-2030-{n:06d}" for n in range(1, 9)]


def test_no_receipt_for_mail_submitted_by_staff(services: Services, box: int,
                                                transport: RecordingTransport) -> None:
    enqueue(services, [BOX], mail("Intern", sender="kollegin@jugendamt.example"),
            mail_from="kollegin@jugendamt.example", direction=Direction.OUTBOUND)
    drain(services)
    (ticket,) = tickets(services)
    assert receipts(transport) == []
    with read_scope(services.sessions) as s:
        last = ticket_view(s, services.master_key, ticket.id).history[-1]
    assert (last.action, last.detail) == ("receipt-skipped", {"reason": "submitted by staff"})
