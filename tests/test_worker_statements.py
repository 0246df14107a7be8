"""The SQL a worker issues for an inbound message filed into a shared mailbox, counted (a
change that adds statements to the hot path fails here), and the behaviour the fewer
statements must keep: receipts to our own addresses refused, a copy filed once, a destroyed
audit key never written with. Real SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

import gateway.audit.chain
from gateway import audit
from gateway.audit import AuditAction
from gateway.audit.chain import verify
from gateway.audit.keys import AuditKeyError, open_personal, period_of
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import (
    AuditEntry,
    AuditKey,
    Message,
    MessageState,
    Recipient,
    RecipientState,
    utcnow,
)
from gateway.pipeline.worker import Worker
from gateway.services import Services
from gateway.settings import RelayRoute
from mailboxes.directory import add_mailbox
from mailboxes.tickets.models import HistoryEntry, Ticket, TicketState
from mailboxes.tickets.records import change_state
from tests.support.pipeline import drain, enqueue

BOX = "kita@jugendamt.example"
OTHER_BOX = "adoption@jugendamt.example"

# Reached by the worker for a message that opens a new ticket and gets a receipt: claim 2,
# load 2, pipeline reads 2 (partner, route; a first attempt has no release to look up),
# filing 2, the ticket 6 (number, ticket, subject tokens, article, receipt facts, history
# rows), the receipt 4 (its queue rows 3, its article 1), the outcome 1 and the audit
# entries 3 (the receipt's with the worker's, one append). (PostgreSQL adds the NOTIFY that
# wakes the workers for the receipt.) Raise it only for a reason.
NEW_TICKET_WITH_RECEIPT = 22
# A reply that joins its ticket (In-Reply-To): no number, ticket or receipt; the lookup by
# reference, the article, the ticket's updated_at and the history row instead.
REPLY_TO_TICKET = 16


def mail(subject: str, *, sender: str, msgid: str, extra: str = "") -> bytes:
    return (f"From: <{sender}>\r\nTo: {BOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}@web.example>\r\n{extra}\r\nHallo.\r\n").encode()


@pytest.fixture
def box(services: Services) -> int:
    with session_scope(services.sessions) as s:
        box_id = add_mailbox(s, BOX, "Kindertagespflege").id
        add_mailbox(s, OTHER_BOX, "Adoption")
    # Receipts leave through the (recording) relay.
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    return box_id


@contextmanager
def counted(services: Services) -> Iterator[collections.Counter[str]]:
    engine: Engine = services.sessions.kw["bind"]
    found: collections.Counter[str] = collections.Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        found[re.sub(r"\s+", " ", statement)[:90]] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", count)


def process_one_counted(services: Services) -> collections.Counter[str]:
    with counted(services) as found:
        assert Worker(services, "w-count").process_one()
    return found


def _reply_processed(services: Services, msgid: str) -> collections.Counter[str]:
    """A reply to the first ticket's mail enqueued and processed: the statements counted."""
    queue_id = enqueue(services, [BOX], mail("Re: Frage", sender="zwei@web.example",
                                             msgid=msgid,
                                             extra="In-Reply-To: <m2@web.example>\r\n"),
                       mail_from="zwei@web.example")
    found = process_one_counted(services)
    assert state_of(services, queue_id) == MessageState.DELIVERED
    return found


def state_of(services: Services, queue_id: str) -> MessageState:
    with read_scope(services.sessions) as s:
        return s.scalars(select(Message.state).where(Message.queue_id == queue_id)).one()


def history_of(services: Services) -> list[tuple[str, str | None]]:
    with read_scope(services.sessions) as s:
        return [(h.action, h.detail) for h in s.scalars(
            select(HistoryEntry).order_by(HistoryEntry.id))]


def test_a_new_ticket_with_a_receipt_and_a_reply_cost_a_bounded_number_of_statements(
        services: Services, box: int, clock: FakeClock) -> None:
    # Warm: the year's ticket counter and the month's audit key exist, as in steady state.
    enqueue(services, [BOX], mail("Erste", sender="eins@web.example", msgid="w1"),
            mail_from="eins@web.example")
    drain(services)

    queue_id = enqueue(services, [BOX], mail("Frage", sender="zwei@web.example", msgid="m2"),
                       mail_from="zwei@web.example")
    found = process_one_counted(services)
    assert state_of(services, queue_id) == MessageState.DELIVERED
    with read_scope(services.sessions) as s:
        assert s.scalar(select(Recipient.state).join(Message).where(
            Message.queue_id == queue_id)) == RecipientState.DELIVERED
        ticket = s.scalars(select(Ticket).order_by(Ticket.id.desc())).first()
        assert ticket is not None and ticket.requester == "zwei@web.example"
        # Created and filed at the same moment: updated_at is the creation's.
        assert ticket.updated_at == ticket.created_at
        ticket_id = ticket.id
    actions = [a for a, _ in history_of(services)]
    assert actions[-2:] == ["created", "receipt-sent"]
    wake = 1 if services.sessions.kw["bind"].dialect.name == "postgresql" else 0
    assert sum(found.values()) <= NEW_TICKET_WITH_RECEIPT + wake, found.most_common()
    assert not [s for s in found if s.startswith("SELECT audit_keys")], found
    with read_scope(services.sessions) as s:
        trail = [(e.action, e.queue_id) for e in s.scalars(
            select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(3))][::-1]
        receipt_id = s.scalars(select(Message.queue_id).where(Message.mail_from == "")
                               .order_by(Message.id.desc())).first()
    # The receipt's arrival is on the trail before the copy that caused it, as before.
    assert [a for a, _ in trail] == ["received", "delivered", "delivered"]
    assert [q for _, q in trail] == [receipt_id, queue_id, queue_id]
    drain(services)  # the receipt

    clock.advance(60)
    found = _reply_processed(services, "m3")
    with read_scope(services.sessions) as s:
        joined = s.get(Ticket, ticket_id)
        assert joined is not None and joined.updated_at > joined.created_at
    assert history_of(services)[-1][0] == "mail-in"
    assert sum(found.values()) <= REPLY_TO_TICKET, found.most_common()

    # Waiting for the requester, the ticket opens again with the next mail in: the move's
    # update carries updated_at, and both history rows go in one statement.
    with session_scope(services.sessions) as s:
        waiting = s.get(Ticket, ticket_id)
        assert waiting is not None
        change_state(s, waiting, TicketState.WAITING, actor="anna", now=clock())
    clock.advance(60)
    found = _reply_processed(services, "m4")
    with read_scope(services.sessions) as s:
        reopened = s.get(Ticket, ticket_id)
        assert reopened is not None and reopened.state == TicketState.OPEN
        assert reopened.updated_at == clock()
    assert [a for a, _ in history_of(services)][-3:] == ["state", "mail-in", "state"]
    assert history_of(services)[-1][1] == '{"from": "waiting", "to": "open"}'
    assert sum(found.values()) <= REPLY_TO_TICKET, found.most_common()


@pytest.mark.parametrize("sender", [OTHER_BOX, "postmaster@gateway.example"])
def test_no_receipt_to_a_shared_mailbox_or_the_postmaster(
        services: Services, box: int, sender: str) -> None:
    services.settings.delivery.postmaster = "Postmaster@Gateway.example"
    enqueue(services, [BOX], mail("Intern", sender=sender, msgid="o1"), mail_from=sender)
    drain(services)
    assert history_of(services)[-1] == ("receipt-skipped", '{"reason": "our own address"}')
    # A stranger gets one: the sender's check is not on the mailbox written to.
    enqueue(services, [BOX], mail("Extern", sender="x@web.example", msgid="o2"),
            mail_from="x@web.example")
    drain(services)
    assert history_of(services)[-1][0] == "receipt-sent"


def test_the_rate_limit_holds_with_the_count_read_with_the_mailbox(
        services: Services, box: int) -> None:
    for n in range(5):
        enqueue(services, [BOX], mail(f"Frage {n}", sender="viel@web.example", msgid=f"r{n}"),
                mail_from="viel@web.example")
        drain(services)
    skipped = [d for a, d in history_of(services) if a == "receipt-skipped"]
    assert [a for a, _ in history_of(services)].count("receipt-sent") == 3
    assert len(skipped) == 2 and all("more than 3 receipts" in (d or "") for d in skipped)


def test_a_destroyed_key_of_the_current_month_is_never_written_with(
        services: Services, box: int) -> None:
    """The month's key is read with the chain's head: a destroyed one (wrapped gone) refuses
    the entry as before, instead of sealing personal data under a key nobody can open."""
    with session_scope(services.sessions) as s:
        audit.record(s, actor="t", action=AuditAction.DELIVERED, queue_id="Q1",
                     detail={"recipient": "a@web.example"})
    with session_scope(services.sessions) as s:
        s.execute(update(AuditKey).where(AuditKey.period == period_of(utcnow()))
                  .values(wrapped=None, destroyed_at=utcnow()))
    with pytest.raises(AuditKeyError), session_scope(services.sessions) as s:
        audit.record(s, actor="t", action=AuditAction.DELIVERED, queue_id="Q2",
                     detail={"recipient": "b@web.example"})


def test_an_entry_dated_in_a_month_that_began_meanwhile_is_sealed_under_its_own_key(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's statement reads the key of the month it expects; should the entry's own
    time fall in the next month, that month's key is taken (created here), not the one read."""
    january = datetime(2031, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    february = datetime(2031, 2, 1, tzinfo=UTC)
    monkeypatch.setattr(gateway.audit.chain, "utcnow", lambda: january)
    with session_scope(services.sessions) as s:
        audit.record(s, actor="t", action=AuditAction.DELIVERED, queue_id="Q1",
                     detail={"recipient": "a@web.example"})
    times = iter([january, february])
    monkeypatch.setattr(gateway.audit.chain, "utcnow", lambda: next(times))
    with session_scope(services.sessions) as s:
        audit.record(s, actor="t", action=AuditAction.DELIVERED, queue_id="Q2",
                     detail={"recipient": "b@web.example"})
    with read_scope(services.sessions) as s:
        assert set(s.scalars(select(AuditKey.period))) >= {"2031-01", "2031-02"}
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert last is not None and last.at == february and last.sealed is not None
        opened = open_personal(s, last.seq, last.at, last.sealed)
        assert opened is not None and opened["detail"] == {"recipient": "b@web.example"}
        assert verify(s).ok
