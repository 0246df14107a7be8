"""The relay journal (gateway/delivery/journal.py): notes, what a worker does with them, and
a journal that cannot be written (the delivery is still recorded, in the queue database)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.db import session_scope
from gateway.delivery.journal import RelayJournal
from gateway.models import AuditEntry, MessageState, RecipientState
from gateway.pipeline.worker import Worker, prune_relay_journal
from gateway.services import Services
from tests.support.pipeline import enqueue, load_message
from tests.support.sink import SmtpSink

RelayServices = Callable[..., Services]
REMOTE = "x@partner.example"
OTHER = "y@partner.example"
MSG = b"From: a@partner.example\r\nTo: x@partner.example\r\nSubject: t\r\n\r\nhallo\r\n"


def test_notes_are_kept_until_forgotten(tmp_path: Path) -> None:
    journal = RelayJournal(tmp_path / "j" / "relay-journal.db")
    assert journal.noted("Q1") == []
    assert not journal.path.exists(), "reading must not create the journal"
    journal.note("Q1", "127.0.0.1:25", [(REMOTE, "250 2.0.0 Ok"), (OTHER, "250 2.0.0 Ok")])
    journal.note("Q2", "127.0.0.1:25", [(REMOTE, "250 2.0.0 Ok")])
    # Another process (a worker taking over) sees what this one noted.
    other = RelayJournal(journal.path)
    assert {(n.recipient, n.reply) for n in other.noted("Q1")} == {
        (REMOTE, "250 2.0.0 Ok"), (OTHER, "250 2.0.0 Ok")}
    journal.forget("Q1", [REMOTE])
    assert [n.recipient for n in other.noted("Q1")] == [OTHER]
    # Prune keeps only what the queue database still has pending.
    assert other.prune(lambda notes: {("Q2", REMOTE)}) == 1
    assert other.noted("Q1") == [] and len(other.noted("Q2")) == 1
    journal.close()
    other.close()


def test_a_relay_is_noted_and_then_forgotten(relay_services: RelayServices,
                                             sink: SmtpSink) -> None:
    services = relay_services(sink)
    assert services.relay_journal is not None
    noted: list[int] = []
    original = services.relay_journal.note

    def spy(queue_id: str, relay: str, delivered: Sequence[tuple[str, str]]) -> None:
        original(queue_id, relay, delivered)
        noted.append(len(delivered))

    services.relay_journal.note = spy  # type: ignore[method-assign]
    queue_id = enqueue(services, [REMOTE], MSG)
    assert Worker(services, "w1").process_one()
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    assert noted == [1]
    assert services.relay_journal.noted(queue_id) == []


def test_a_note_left_by_a_dead_worker_is_recorded_not_sent(relay_services: RelayServices,
                                                           sink: SmtpSink) -> None:
    services = relay_services(sink)
    assert services.relay_journal is not None
    queue_id = enqueue(services, [REMOTE, OTHER], MSG)
    # As a worker leaves it when killed between its note and the queue database's record.
    services.relay_journal.note(queue_id, "127.0.0.1:25", [(REMOTE, "250 2.0.0 Ok: queued")])
    assert Worker(services, "w2").process_one()
    message = load_message(services, queue_id)
    assert message.state == MessageState.DELIVERED
    assert {r.address: r.state for r in message.recipients} == {
        REMOTE: RecipientState.DELIVERED, OTHER: RecipientState.DELIVERED}
    # Only the recipient without a note was sent to.
    assert [d.rcpt_tos for d in sink.deliveries] == [(OTHER,)]
    with session_scope(services.sessions) as s:
        details = list(s.scalars(select(AuditEntry.detail).where(
            AuditEntry.queue_id == queue_id, AuditEntry.action == "delivered")))
    assert sum('"recorded_from":"relay journal"' in d for d in details) == 1
    assert services.relay_journal.noted(queue_id) == []


def test_prune_forgets_notes_the_queue_database_has(relay_services: RelayServices,
                                                    sink: SmtpSink) -> None:
    services = relay_services(sink)
    assert services.relay_journal is not None
    pending = enqueue(services, [REMOTE], MSG)
    services.relay_journal.note(pending, "h:25", [(REMOTE, "250 ok")])
    services.relay_journal.note("GONE", "h:25", [(REMOTE, "250 ok")])
    prune_relay_journal(services)
    assert services.relay_journal.noted("GONE") == []
    assert len(services.relay_journal.noted(pending)) == 1


def test_an_unwritable_journal_still_records_the_delivery(
        relay_services: RelayServices, sink: SmtpSink, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    services = relay_services(sink)
    # A directory where the journal file should be: SQLite cannot open it.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    services.relay_journal = RelayJournal(blocked)
    queue_id = enqueue(services, [REMOTE], MSG)
    with caplog.at_level(logging.ERROR):
        assert Worker(services, "w1").process_one()
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    assert len(sink.deliveries) == 1
    assert any("relay journal unavailable" in r.getMessage() for r in caplog.records)
