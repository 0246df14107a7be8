"""A message that makes clamd crash or hang every time is quarantined as unscannable after
[scanning] unscannable_after_failures tries (default 5), with a notice; with clamd merely
away for everyone it waits, uncounted, however often it is tried.

The hostile clamd is a real unix socket peer (tests/support/hostile_clamd.py) that takes the
scan and then drops the connection or never answers, as a clamd crashing or stuck on the
content does.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.clock import FakeClock
from gateway.db import is_sqlite, session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import Direction, Message, MessageState, Recipient
from gateway.pipeline.worker import Worker
from gateway.queue.spool import Envelope, Stored, store_received
from gateway.services import Services, build_services
from mailboxes.directory import add_mailbox
from scanning.clamd_client import Chunk, ClamdAnswer, ClamdClient
from scanning.errors import ScanInterrupted, ScannerUnavailable
from scanning.scanner import MessageScanner
from tests.conftest import make_settings
from tests.support.clamd import short_temp_dir
from tests.support.hostile_clamd import HostileClamd
from tests.support.smtp_client import make_message

MAILBOX = "kita@jugendamt.example"
SENDER = "asd@partner.example"


@pytest.fixture
def clamd_dir() -> Iterator[Path]:
    # Short: unix socket paths are limited to 107 bytes.
    directory = short_temp_dir("xgate-hostile-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _services(tmp_path: Path, database_url: str, clamd_socket: Path, clock: FakeClock,
              **scanning: Any) -> Services:
    settings = make_settings(tmp_path / "var", database_url,
                             scanning={"clamd_socket": str(clamd_socket), **scanning})
    services = build_services(settings, transport=RecordingTransport(), clock=clock)
    with session_scope(services.sessions) as session:
        add_mailbox(session, MAILBOX, "Kita")
    return services


def _receive(services: Services) -> Stored:
    with session_scope(services.sessions) as session:
        return store_received(session, services.master_key, Envelope(
            direction=Direction.INBOUND, mail_from=SENDER, rcpt_tos=[MAILBOX],
            data=make_message(to=MAILBOX, sender=SENDER)),
            actor="smtp", now=services.clock())


def _try_once(services: Services, clock: FakeClock, stored: Stored) -> Message:
    """One worker pass over the message once its retry is due."""
    clock.advance(2 * 3600)
    assert Worker(services, "worker:test:0").process_one()
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message).where(Message.id == stored.id)).one()
        session.expunge(message)
        return message


def _notices_to_sender(services: Services) -> int:
    with session_scope(services.sessions) as session:
        return len(session.scalars(
            select(Message.id).join(Recipient, Recipient.message_id == Message.id)
            .where(Message.mail_from == "", Message.direction == Direction.OUTBOUND,
                   Recipient.address == SENDER)).all())


def test_clamd_crashing_on_the_message_every_time_quarantines_it_after_five_tries(
        tmp_path: Path, database_url: str, clamd_dir: Path) -> None:
    clock = FakeClock()
    with HostileClamd(clamd_dir / "clamd.sock", "drop") as clamd:
        services = _services(tmp_path, database_url, clamd.path, clock)
        try:
            assert services.settings.scanning.unscannable_after_failures == 5  # the default
            stored = _receive(services)
            for tried in range(1, 5):
                message = _try_once(services, clock, stored)
                assert message.state == MessageState.DEFERRED, message.reason
                assert message.scan_failures == tried
                assert "virus scan failed on this message" in (message.reason or "")
                assert _notices_to_sender(services) == 0
            message = _try_once(services, clock, stored)
            assert clamd.scans >= 5
        finally:
            services.sessions.kw["bind"].dispose()
    assert message.state == MessageState.QUARANTINED
    assert (message.reason or "").startswith("unscannable: clamd failed on this message 5 times")
    # Found by the console's verdict filter like every other unscannable message.
    assert json.loads(message.facts or "{}")["scan"].startswith("unscannable:")
    assert _notices_to_sender(services) == 1


def test_clamd_hanging_on_the_message_counts_too(tmp_path: Path, database_url: str,
                                                  clamd_dir: Path) -> None:
    if not is_sqlite(database_url):
        pytest.skip("the count's storage is shown on both databases by the crash test")
    clock = FakeClock()
    with HostileClamd(clamd_dir / "clamd.sock", "hang") as clamd:
        services = _services(tmp_path, database_url, clamd.path, clock, timeout_seconds=1.5,
                             clamd_max_scan_time_seconds=1, unscannable_after_failures=2)
        try:
            stored = _receive(services)
            first = _try_once(services, clock, stored)
            second = _try_once(services, clock, stored)
        finally:
            services.sessions.kw["bind"].dispose()
    assert (first.state, first.scan_failures) == (MessageState.DEFERRED, 1)
    assert "did not answer INSTREAM" in (first.reason or "")
    assert second.state == MessageState.QUARANTINED
    assert _notices_to_sender(services) == 1


def test_clamd_down_for_everyone_never_quarantines(tmp_path: Path, database_url: str,
                                                    clamd_dir: Path) -> None:
    # A socket file nobody listens on: what a stopped clamd leaves behind (refused).
    path = clamd_dir / "clamd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    clock = FakeClock()
    services = _services(tmp_path, database_url, path, clock)
    try:
        stored = _receive(services)
        for _ in range(7):
            message = _try_once(services, clock, stored)
            assert message.state == MessageState.DEFERRED
            assert message.scan_failures == 0
            assert (message.reason or "").startswith("virus scanner unavailable")
        assert _notices_to_sender(services) == 0
    finally:
        services.sessions.kw["bind"].dispose()


def test_the_client_tells_a_dropped_scan_from_an_unreachable_clamd(clamd_dir: Path) -> None:
    with HostileClamd(clamd_dir / "drop.sock", "drop") as clamd:
        client = ClamdClient(socket_path=clamd.path, timeout=5)
        with pytest.raises(ScanInterrupted):
            client.instream(b"x" * 100_000)
        # Not a scan: nothing of a message was handed over.
        with pytest.raises(ScannerUnavailable) as refused_ping:
            client.ping()
        assert not isinstance(refused_ping.value, ScanInterrupted)
    with HostileClamd(clamd_dir / "hang.sock", "hang") as clamd:
        with pytest.raises(ScanInterrupted, match="did not answer"):
            ClamdClient(socket_path=clamd.path, timeout=1).instream(b"x" * 1000)
    with pytest.raises(ScannerUnavailable) as nobody:
        ClamdClient(socket_path=clamd_dir / "none.sock", timeout=5).instream(b"x")
    assert not isinstance(nobody.value, ScanInterrupted)


class _OnePartDropsTheOthersFindNobody(ClamdClient):
    """clamd as the parts of one message meet it when that message's part crashed it: the
    part's own scan is dropped, the parts scanned after the crash find nobody listening."""

    def instream(self, data: bytes | bytearray | memoryview) -> ClamdAnswer:
        if b"crashes clamd" in bytes(data):
            raise ScanInterrupted("clamd closed the connection without answering")
        raise ScannerUnavailable("cannot connect: connection refused")

    def instream_chunks(self, chunks: Callable[[], Iterable[Chunk]]) -> ClamdAnswer:
        raise ScannerUnavailable("cannot connect: connection refused")


def test_a_scan_dropped_by_clamd_counts_however_the_other_parts_fared(
        clamd_dir: Path) -> None:
    raw = (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nSubject: x\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nfirst, scanned after the crash\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\n\r\ncrashes clamd\r\n"
           b"--b--\r\n")
    scanner = MessageScanner(_OnePartDropsTheOthersFindNobody(
        socket_path=clamd_dir / "unused.sock"))
    with pytest.raises(ScanInterrupted):
        scanner.scan(BytesParser(policy=compat32).parsebytes(raw), raw)
