"""Crashes and concurrency with real worker processes (``xgate serve worker``).

A worker killed with SIGKILL leaves its message in ``processing`` with a lease; once the lease
has expired another worker takes it over and delivers what is still pending. What was already
committed (a mailbox copy) is not repeated, and a relay transaction the next hop never
acknowledged is sent again, once.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import audit
from gateway.audit.view import opened as opened_audit
from gateway.db import session_scope
from gateway.delivery.journal import FILE_NAME as JOURNAL_FILE
from gateway.delivery.journal import RelayJournal
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.models import (
    AuditEntry,
    AuditHead,
    Direction,
    Message,
    MessageState,
    Recipient,
    RecipientState,
)
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services, build_services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from mailboxes.models import StoredMessage
from mailboxes.store import messages_in, read_message
from tests.conftest import make_settings
from tests.support.pipeline import without_result_headers
from tests.support.postgres import PostgresServer
from tests.support.sink import SmtpSink
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, runner_command, write_config

MAILBOX = "kita@jugendamt.example"
REMOTE = "x@partner.example"
OTHER_REMOTE = "y@other.example"
# Short, so a restarted worker takes over a dead worker's message quickly.
LEASE_SECONDS = 2.0

MakeSink = Callable[..., SmtpSink]


def _message(n: int, to: str = MAILBOX) -> bytes:
    return (f"From: a@partner.example\r\nTo: {to}\r\nSubject: Nachricht {n}\r\n"
            f"Message-ID: <crash-{n}@partner.example>\r\n\r\nInhalt {n}\r\n").encode()


@pytest.fixture
def make_workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Worker processes on a config file written from the test's settings; all are stopped
    (SIGKILL if SIGTERM does not do) when the test ends."""
    made: list[WorkerProcess] = []

    def make(settings: Settings, *, threads: int, sink: SmtpSink | None = None,
             sinks: dict[str, SmtpSink] | None = None,
             lease_seconds: float = LEASE_SECONDS, name: str = "worker",
             stage_delay: float | None = None) -> WorkerProcess:
        """``xgate serve worker``; with ``stage_delay``, the test runner that pauses after
        each stage (tests/support/worker_process.py)."""
        config: dict[str, Any] = {
            "data_dir": str(settings.data_dir),
            "database": {"url": settings.database.url},
            "storage": {"master_key_file": str(settings.storage.master_key_file)},
            "smtp": {"hostname": "xgate.test"},
            "workers": {"count": threads, "lease_seconds": lease_seconds,
                        "poll_interval_seconds": 0.1},
            "logging": {"level": "INFO", "json": False},
            "crypto": {"unknown_partner_outbound":
                       settings.crypto.unknown_partner_outbound.value},
            "scanning": {"clamd_socket": str(settings.scanning.clamd_socket)},
        }
        routes = [{"domain": domain, "host": s.host, "port": s.port, "tls": "none"}
                  for domain, s in (sinks or {}).items()]
        if sink is not None:
            routes.append({"domain": "*", "host": sink.host, "port": sink.port, "tls": "none"})
        if routes:
            config["delivery"] = {"routes": routes}
        path = write_config(tmp_path / f"{name}.toml", config)
        command = None if stage_delay is None else runner_command(path, threads, stage_delay)
        worker = WorkerProcess(path, tmp_path / "logs", name, command)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def _services(settings: Settings) -> Services:
    # The test process only enqueues and inspects; the real clock, as the workers use.
    return build_services(settings, transport=SmtpRelayTransport(settings))


@pytest.fixture
def services_here(settings: Settings) -> Iterator[Services]:
    services = _services(settings)
    yield services
    services.sessions.kw["bind"].dispose()


def _enqueue(services: Services, messages: list[tuple[list[str], bytes]]) -> list[str]:
    """All in one transaction, so workers see them at once."""
    with session_scope(services.sessions) as s:
        return [store_received(s, services.master_key, Envelope(
            Direction.INBOUND, "a@partner.example", rcpts, data), actor="test",
            now=services.clock()).queue_id for rcpts, data in messages]


def _states(services: Services, queue_ids: list[str]) -> dict[str, MessageState]:
    with session_scope(services.sessions) as s:
        rows = s.execute(select(Message.queue_id, Message.state)
                         .where(Message.queue_id.in_(queue_ids))).all()
    return {queue_id: state for queue_id, state in rows}


def _all_delivered(services: Services, queue_ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        states = _states(services, queue_ids)
        return all(states.get(q) == MessageState.DELIVERED for q in queue_ids)
    return check


def _mailbox(services: Services) -> int:
    with session_scope(services.sessions) as s:
        mailbox = add_mailbox(s, MAILBOX, "Kindertagespflege")
        # A receipt to the sender would be one more delivery at the sinks these tests count.
        mailbox.receipt_enabled = False
        return mailbox.id


def _assert_audit_verifies(services: Services) -> None:
    with session_scope(services.sessions) as s:
        result = audit.verify(s)
    assert result.ok, f"audit chain broken at {result.first_broken_seq}: {result.problem}"


def _audit_actions(services: Services, queue_id: str) -> list[str]:
    with session_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).where(AuditEntry.queue_id == queue_id)
                              .order_by(AuditEntry.seq)))


def _taken_over(settings: Settings, services: Services,
                make_workers: Callable[..., WorkerProcess], queue_id: str, *, what: str,
                **relay_to: Any) -> WorkerProcess:
    """A worker process ("second", relaying to ``relay_to``) delivers ``queue_id``; it has
    stopped cleanly on return."""
    second = make_workers(settings, threads=1, name="second", **relay_to).start()
    wait_until(_all_delivered(services, [queue_id]), timeout=20, detail=second.log_tail,
               what=what)
    assert second.stop() == 0
    return second


def test_kill_during_relay_data_resumes_without_duplicates(
        settings: Settings, services_here: Services, make_sink: MakeSink,
        make_workers: Callable[..., WorkerProcess]) -> None:
    """Killed while the second of two next hops stalls in DATA: after the restart the first
    hop, whose delivery was already committed, does not get the message again; the stalled
    hop and the mailbox get exactly one copy each."""
    services = services_here
    answering = make_sink()
    stalling = make_sink()
    stalling.stall_data()
    mailbox_id = _mailbox(services)
    data = _message(1, to=f"{MAILBOX}, {REMOTE}, {OTHER_REMOTE}")
    [queue_id] = _enqueue(services, [([MAILBOX, REMOTE, OTHER_REMOTE], data)])
    sinks = {"partner.example": answering, "other.example": stalling}
    # One thread: a second one would take the stalled message over when the lease runs out.
    first = make_workers(settings, threads=1, sinks=sinks, name="first").start()

    def relayed_once_and_stalled() -> bool:
        with session_scope(services.sessions) as s:
            state = s.scalar(select(Message.state).where(Message.queue_id == queue_id))
            done = s.scalar(select(Recipient.state).join(Message).where(
                Message.queue_id == queue_id, Recipient.address == REMOTE))
        return (state == MessageState.PROCESSING and done == RecipientState.DELIVERED
                and stalling.stalled.is_set())

    wait_until(relayed_once_and_stalled, timeout=20, detail=first.log_tail,
               what="the first relay committed and the second stalled in DATA")
    first.kill()
    # The sink sees the connection drop and discards the transaction it never answered.
    wait_until(lambda: stalling.aborted == 1, timeout=5,
               what="the sink to discard the unacknowledged transaction")
    stalling.release()
    assert stalling.deliveries == []
    with session_scope(services.sessions) as s:
        # Filed with the outcome, in one transaction: nothing was filed before the kill.
        assert messages_in(s, mailbox_id) == []

    _taken_over(settings, services, make_workers, queue_id, sinks=sinks,
                what="the restarted worker to deliver the message")

    with session_scope(services.sessions) as s:
        copies = messages_in(s, mailbox_id)
        assert len(copies) == 1
        # The copy is the message as it came, under the gateway's X-Xgate-* result headers.
        filed = read_message(services.master_key, copies[0])
        assert filed.endswith(data) and filed.startswith(b"X-Xgate-Queue-Id: ")
        message = s.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        assert {r.address: r.state for r in message.recipients} == {
            MAILBOX: RecipientState.DELIVERED, REMOTE: RecipientState.DELIVERED,
            OTHER_REMOTE: RecipientState.DELIVERED}
    [once] = answering.deliveries
    assert once.rcpt_tos == (REMOTE,)
    [resumed] = stalling.deliveries
    assert resumed.rcpt_tos == (OTHER_REMOTE,)
    assert once.content == resumed.content
    assert without_result_headers(once.content) == data
    actions = _audit_actions(services, queue_id)
    assert "lease-expired" in actions
    # two relays, the mailbox, and the message's final state
    assert actions.count("delivered") == 4
    _assert_audit_verifies(services)


def _kill_at_random(worker: WorkerProcess, done: Callable[[], bool], rng: random.Random, *,
                    most: int, pause: tuple[float, float]) -> int:
    """Start ``worker`` and SIGKILL it after a random pause (seconds, from ``pause``), at
    most ``most`` times and not once ``done()``; then start it for good. How many kills."""
    kills = 0
    while kills < most and not done():
        worker.start().wait_ready()
        time.sleep(rng.uniform(*pause))
        worker.kill()
        kills += 1
    worker.start().wait_ready()
    return kills


def test_random_kills_deliver_every_message_exactly_once(
        settings: Settings, services_here: Services,
        make_workers: Callable[..., WorkerProcess]) -> None:
    services = services_here
    mailbox_id = _mailbox(services)
    queue_ids = _enqueue(services, [([MAILBOX], _message(n)) for n in range(20)])
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Each message spends ~0.3 s in the pipeline, most of it between commits: a kill at a
    # random moment almost always interrupts one.
    worker = make_workers(settings, threads=2, stage_delay=0.08)
    done = _all_delivered(services, queue_ids)

    def progress() -> str:
        states = Counter(_states(services, queue_ids).values())
        return f"seed {seed}; states {dict(states)}\n{worker.log_tail()}"

    # Kill at random moments, but leave each run a chance to make progress.
    _kill_at_random(worker, done, rng, most=5, pause=(0.1, 1.0))
    wait_until(done, timeout=25, what="every message delivered after the kills",
               detail=progress)
    assert worker.stop() == 0
    actions = Counter(a for q in queue_ids for a in _audit_actions(services, q))
    # Evidence that the kills hit messages mid-pipeline, not only idle workers.
    assert actions["lease-expired"] >= 1, f"no kill interrupted a message: {actions}, seed {seed}"

    with session_scope(services.sessions) as s:
        per_message = dict(s.execute(
            select(StoredMessage.message_id, func.count())
            .where(StoredMessage.mailbox_id == mailbox_id)
            .group_by(StoredMessage.message_id)).all())
        ids = dict(s.execute(select(Message.queue_id, Message.id)
                             .where(Message.queue_id.in_(queue_ids))).all())
    assert sorted(per_message) == sorted(ids.values()), "a message is missing from the mailbox"
    assert set(per_message.values()) == {1}, f"duplicates: {per_message}"
    _assert_audit_verifies(services)


# -- the relay window: the next hop's 250 -> our durable record ----------------------------


def _journal(settings: Settings) -> RelayJournal:
    return RelayJournal(settings.resolve(settings.data_dir) / JOURNAL_FILE)


@contextmanager
def _queue_database_held(services: Services) -> Iterator[None]:
    """Hold what a worker's delivery record in the queue database waits for: SQLite's
    write lock (our transactions begin IMMEDIATE), or on PostgreSQL the audit chain's head
    row, which every audit append locks."""
    with session_scope(services.sessions) as s:
        s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())
        yield


def _relay_waiting_for_the_reply(settings: Settings, services: Services, sink: SmtpSink,
                                 make_workers: Callable[..., WorkerProcess],
                                 n: int) -> tuple[str, WorkerProcess]:
    """Message ``n`` to REMOTE, in the hands of a worker process ("first") that has sent it
    to ``sink`` and waits for the reply to DATA, which ``sink.release()`` lets come."""
    sink.stall_data()
    [queue_id] = _enqueue(services, [([REMOTE], _message(n, REMOTE))])
    first = make_workers(settings, threads=1, sink=sink, name="first").start()
    wait_until(sink.stalled.is_set, timeout=20, detail=first.log_tail,
               what="the relay to wait for the next hop's reply to DATA")
    return queue_id, first


def test_a_worker_killed_after_noting_a_relay_does_not_send_it_again(
        settings: Settings, services_here: Services, make_sink: MakeSink,
        make_workers: Callable[..., WorkerProcess]) -> None:
    """Killed after the relay journal's note but before the queue database's record: the
    worker that takes over records the delivery from the note and does not send again."""
    services = services_here
    sink = make_sink()
    queue_id, first = _relay_waiting_for_the_reply(settings, services, sink, make_workers, 1)
    journal = _journal(settings)
    with _queue_database_held(services):
        sink.release()
        wait_until(lambda: bool(journal.noted(queue_id)), timeout=20, detail=first.log_tail,
                   what="the delivery noted in the relay journal")
        # The worker now waits for the queue database; it dies before recording there.
        first.kill()
    assert len(sink.deliveries) == 1
    with session_scope(services.sessions) as s:
        assert s.scalar(select(Recipient.state).join(Message).where(
            Message.queue_id == queue_id)) == RecipientState.PENDING

    second = _taken_over(settings, services, make_workers, queue_id, sink=sink,
                         what="the worker taking over to finish the message")
    assert len(sink.deliveries) == 1, "sent again although the journal had the delivery"
    with session_scope(services.sessions) as s:
        details = [e.details for e in opened_audit(s, s.scalars(select(AuditEntry).where(
            AuditEntry.queue_id == queue_id, AuditEntry.action == "delivered")))]
    relayed = [d for d in details if d.get("recipient") == REMOTE]
    assert len(relayed) == 1
    assert relayed[0]["recorded_from"] == "relay journal"
    assert relayed[0]["reply"].startswith("250 ")
    assert "recorded from the relay journal" in second.log_text()
    assert journal.noted(queue_id) == []
    _assert_audit_verifies(services)


def test_a_worker_killed_between_the_250_and_the_note_sends_again_once(
        settings: Settings, services_here: Services, make_sink: MakeSink,
        make_workers: Callable[..., WorkerProcess]) -> None:
    """The window that remains, shown on purpose: the next hop has accepted the message
    but the worker dies before its note is durable. Nothing records the delivery, so the
    message is sent again, once: the next hop gets it twice and the audit trail shows one
    transfer (README: the relay window)."""
    services = services_here
    sink = make_sink()
    queue_id, first = _relay_waiting_for_the_reply(settings, services, sink, make_workers, 2)
    # Hold the journal's write lock: the worker's note waits for it.
    path = settings.resolve(settings.data_dir) / JOURNAL_FILE
    held = sqlite3.connect(path, isolation_level=None)
    try:
        held.execute("PRAGMA journal_mode=WAL")
        held.execute("BEGIN IMMEDIATE")
        sink.release()
        wait_until(lambda: len(sink.deliveries) == 1, timeout=20, detail=first.log_tail,
                   what="the next hop to accept the message")
        first.kill()
        held.execute("ROLLBACK")
    finally:
        held.close()
    assert "relay recorded" not in first.log_text()

    _taken_over(settings, services, make_workers, queue_id, sink=sink,
                what="the worker taking over to send the message again")
    once, twice = sink.deliveries
    assert without_result_headers(once.content) == without_result_headers(twice.content)
    actions = _audit_actions(services, queue_id)
    # Two "delivered": the relay (recorded once) and the message's final state.
    assert actions.count("delivered") == 2
    _assert_audit_verifies(services)


_RECORDED = re.compile(r"relay recorded .*queue_id=(\S+) .*recorded_at=(\S+)")


def _recorded_at(log_dir: Path) -> dict[str, float]:
    """queue id -> the first "relay recorded" time in any worker log (every start's)."""
    found: dict[str, float] = {}
    for log in sorted(log_dir.glob("*.log")):
        for match in _RECORDED.finditer(log.read_text(errors="replace")):
            found.setdefault(match.group(1), float(match.group(2)))
    return found


def test_random_kills_during_relays_never_repeat_a_recorded_delivery(
        settings: Settings, services_here: Services, make_sink: MakeSink,
        make_workers: Callable[..., WorkerProcess], tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    """Relays with worker processes killed (SIGKILL) at random moments. A message whose
    delivery the worker had recorded before it was killed is never sent again; one that
    the next hop accepted in the moment before the record may be (counted, not failed).
    The window from the sink's 250 to the worker's record is measured and reported; its
    size is not asserted (benchmarks/relay_window.py measures it under load)."""
    services = services_here
    sink = make_sink()
    count = 40
    queue_ids = _enqueue(services, [([REMOTE], _message(n, REMOTE)) for n in range(count)])
    by_message_id = {f"<crash-{n}@partner.example>": q for n, q in enumerate(queue_ids)}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    worker = make_workers(settings, threads=2, sink=sink)
    done = _all_delivered(services, queue_ids)
    kills = _kill_at_random(worker, done, rng, most=6, pause=(0.05, 0.6))
    wait_until(done, timeout=40, what=f"every message delivered (seed {seed})",
               detail=worker.log_tail)
    assert worker.stop() == 0

    recorded = _recorded_at(tmp_path / "logs")
    replies: dict[str, list[float]] = {}
    for delivery in sink.deliveries:
        message_id = BytesHeaderParser().parsebytes(delivery.content)["Message-ID"]
        replies.setdefault(by_message_id[message_id], []).append(delivery.replied_at)
    assert sorted(replies) == sorted(queue_ids), "a message never reached the next hop"
    # A second delivery after a record of the first is what must never happen.
    repeated_after_record = [q for q, times in replies.items()
                             if len(times) > 1 and q in recorded and recorded[q] < times[1]]
    assert repeated_after_record == [], f"seed {seed}"
    duplicates = sum(len(times) - 1 for times in replies.values())
    windows = sorted((recorded[q] - times[0]) * 1000 for q, times in replies.items()
                     if q in recorded and len(times) == 1)
    assert len(windows) >= count // 2, f"only {len(windows)} windows measured"
    figures = {"seed": seed, "kills": kills, "samples": len(windows),
               "duplicates_before_record": duplicates,
               "p50_ms": round(percentile(windows, 50), 3),
               "p99_ms": round(percentile(windows, 99), 3), "max_ms": round(windows[-1], 3)}
    record_property("relay_window", figures)
    print(f"relay window (sink 250 -> recorded): {figures}")
    with session_scope(services.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.state != RecipientState.DELIVERED)) == 0
    _assert_audit_verifies(services)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@pytest.fixture
def pg_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh PostgreSQL database (this test needs SKIP LOCKED)."""
    if os.environ.get("XGATE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL disabled by XGATE_TEST_SKIP_POSTGRES=1")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return make_settings(tmp_path / "var", server.create_database())


def test_worker_processes_share_the_queue_without_duplicates(
        pg_settings: Settings, make_sink: MakeSink,
        make_workers: Callable[..., WorkerProcess]) -> None:
    services = _services(pg_settings)
    try:
        sink = make_sink()
        # A long lease: no message may be taken over while its worker is still at it.
        workers = [make_workers(pg_settings, threads=2, sink=sink, lease_seconds=60,
                                name=f"w{i}").start() for i in range(3)]
        for worker in workers:
            worker.wait_ready()
        count = 60
        queue_ids = _enqueue(services, [([f"m{n}@partner.example"], _message(n, "x"))
                                        for n in range(count)])
        wait_until(_all_delivered(services, queue_ids), timeout=25,
                   what="all messages delivered",
                   detail=lambda: "\n".join(w.log_tail(10) for w in workers))
        for worker in workers:
            assert worker.stop() == 0, worker.log_tail()

        ids = Counter(BytesHeaderParser().parsebytes(d.content)["Message-ID"]
                      for d in sink.deliveries)
        assert len(ids) == count
        assert set(ids.values()) == {1}, f"duplicates: {[i for i, n in ids.items() if n > 1]}"
        assert ids.keys() == {f"<crash-{n}@partner.example>" for n in range(count)}
        with session_scope(services.sessions) as s:
            actors = set(s.scalars(select(AuditEntry.actor).where(
                AuditEntry.action == "delivered", AuditEntry.queue_id.in_(queue_ids))))
        processes = {actor.rsplit(":", 1)[0] for actor in actors}
        assert len(processes) >= 2, f"only {processes} worked; the test shows no sharing"
        _assert_audit_verifies(services)
    finally:
        services.sessions.kw["bind"].dispose()
