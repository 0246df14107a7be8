"""Workers are woken when mail is stored, not found by their poll (gateway.queue.wake).

The poll is set to a minute here: a message processed within seconds can only have been
found through the wake-up (on SQLite a datagram to the worker process's socket, on
PostgreSQL LISTEN/NOTIFY), or through the timer to the next retry that falls due.
"""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from gateway.db import is_sqlite, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import Direction, Message, MessageState, utcnow
from gateway.pipeline.worker import Worker
from gateway.queue.spool import Envelope, store_received
from gateway.queue.wake import Doorbell, LocalBell, LocalListener, listener_for, wake_dir
from gateway.services import Services, build_services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support.smtp_client import client_context, make_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    MAILBOX,
    Edge,
    edge_fixture,
    start_edge_fixture,
    tls_files_fixture,
)
from tests.support.waiting import wait_until

POLL = 60.0
# Far below the poll: only a wake-up (or the retry timer) explains processing this soon.
PROMPTLY = 10.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url,
                         workers={"poll_interval_seconds": POLL})


@contextmanager
def running_worker(services: Services) -> Iterator[Doorbell]:
    """A worker thread with the wake listener ``xgate serve worker`` runs, idle at first."""
    doorbell = Doorbell()
    listener = listener_for(services.settings, services.sessions.kw["bind"], doorbell)
    listener.start()
    if isinstance(listener, LocalListener):
        assert listener.path.exists(), "the wake socket was not bound"
    stop = threading.Event()
    worker = Worker(services, "worker:wake-test:0")
    thread = threading.Thread(target=worker.run_forever, args=(stop, doorbell), daemon=True)
    thread.start()
    try:
        # Let it find nothing and fall asleep on the minute-long poll.
        wait_until(lambda: doorbell.sleepers == 1, timeout=PROMPTLY,
                   what="the worker to fall asleep")
        yield doorbell
    finally:
        stop.set()
        doorbell.ring()
        thread.join(10)
        listener.stop()
        assert not thread.is_alive(), "the worker did not stop when rung"


def _state(services: Services, queue_id: str) -> MessageState:
    with session_scope(services.sessions) as session:
        return session.scalars(select(Message.state).where(Message.queue_id == queue_id)).one()


def test_mail_taken_over_smtp_wakes_the_idle_worker(services: Services, edge: Edge) -> None:
    with session_scope(services.sessions) as session:
        add_mailbox(session, MAILBOX, "Kita")
    with running_worker(services):
        started = time.monotonic()
        with smtplib.SMTP(*edge.inbound) as client:
            client.starttls(context=client_context(edge.cert))
            client.ehlo("mta.partner.example")
            refused = client.sendmail("asd@partner.example", [MAILBOX],
                                      make_message(to=MAILBOX))
        assert refused == {}
        with session_scope(services.sessions) as session:
            queue_id = session.scalars(select(Message.queue_id)).one()
        wait_until(lambda: _state(services, queue_id) == MessageState.DELIVERED,
                   timeout=PROMPTLY, what="the woken worker to file the message")
        assert time.monotonic() - started < POLL


def test_a_retry_falls_due_without_a_wake_up(tmp_path: Path, database_url: str) -> None:
    # The real clock: the worker sleeps until the stored time, then takes the message.
    settings = make_settings(tmp_path / "var", database_url,
                             workers={"poll_interval_seconds": POLL})
    services = build_services(settings, transport=RecordingTransport())
    try:
        with running_worker(services):
            not_before = utcnow() + timedelta(seconds=1.5)
            with session_scope(services.sessions) as session:
                stored = store_received(session, services.master_key, Envelope(
                    direction=Direction.INBOUND, mail_from="a@partner.example",
                    rcpt_tos=["nobody@jugendamt.example"], data=make_message()),
                    actor="test", now=utcnow(), not_before=not_before)
            # The wake-up of the store finds it not due yet; the timer takes it later.
            wait_until(lambda: _state(services, stored.queue_id) != MessageState.RECEIVED,
                       timeout=PROMPTLY, what="the worker to take the message when due")
            assert utcnow() >= not_before
    finally:
        services.sessions.kw["bind"].dispose()


def test_a_ring_while_the_worker_looks_is_not_slept_through() -> None:
    doorbell = Doorbell()
    seen = doorbell.rings
    doorbell.ring()  # between the look for work and the sleep
    started = time.monotonic()
    assert doorbell.wait(seen, POLL)
    assert time.monotonic() - started < 1
    assert not doorbell.wait(doorbell.rings, 0.05)


def test_a_bell_removes_the_socket_of_a_worker_that_died(settings: Settings) -> None:
    if not is_sqlite(settings.database.url):
        pytest.skip("the local bell is SQLite's")
    directory = wake_dir(settings)
    directory.mkdir(parents=True)
    dead = directory / "4242-00000000.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(dead))
    sock.close()  # killed: its socket file stays behind
    doorbell = Doorbell()
    alive = LocalListener(directory, doorbell)
    alive.start()
    try:
        seen = doorbell.rings
        LocalBell(directory).ring()
        assert doorbell.wait(seen, PROMPTLY)
        assert not dead.exists()
        assert alive.path.exists()
    finally:
        alive.stop()
    assert not alive.path.exists()


def test_a_lost_listening_connection_is_listened_again(services: Services) -> None:
    if is_sqlite(services.settings.database.url):
        pytest.skip("LISTEN is PostgreSQL's")
    engine = services.sessions.kw["bind"]

    def listening() -> list[int]:
        with engine.connect() as conn:
            return list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%'")).scalars())

    with running_worker(services):
        wait_until(lambda: bool(listening()), timeout=PROMPTLY, what="the LISTEN connection")
        old = listening()
        with engine.connect() as conn:
            for pid in old:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        wait_until(lambda: not set(listening()) & set(old), timeout=PROMPTLY,
                   what="the listening connection to end")
        # Stored while nobody listens: its NOTIFY reaches no one; the listener, connected
        # again, rings once for whatever was committed meanwhile.
        with session_scope(services.sessions) as session:
            stored = store_received(session, services.master_key, Envelope(
                direction=Direction.INBOUND, mail_from="a@partner.example",
                rcpt_tos=["nobody@jugendamt.example"], data=make_message()),
                actor="test", now=services.clock())
        wait_until(lambda: _state(services, stored.queue_id) != MessageState.RECEIVED,
                   timeout=PROMPTLY, what="the worker woken after the listener came back")
        wait_until(lambda: bool(set(listening()) - set(old)), timeout=PROMPTLY,
                   what="LISTEN on a new connection")
