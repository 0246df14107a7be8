"""A clean 50 MB attachment: scanned and delivered with bounded worker memory; over the size
limit, the same attachment is refused at SMTP with 552."""

from __future__ import annotations

import base64
import os
import smtplib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport
from gateway.models import MessageState
from gateway.services import Services, build_services
from gateway.settings import Settings
from mailboxes.directory import add_mailbox
from tests.conftest import make_settings
from tests.support.clamd import RunningClamd, large_message_clamd
from tests.support.pipeline import drain, enqueue, load_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    start_edge_fixture,
    tls_files_fixture,
)

MAILBOX = "kita@jugendamt.example"
ATTACHMENT = 50 * 1024 * 1024
LIMIT = 80 * 1024 * 1024  # the 50 MB attachment is about 68 MB as base64 mail


@pytest.fixture(scope="module")
def big_clamd() -> Iterator[RunningClamd]:
    """A clamd of its own whose stream limit takes the whole message."""
    clamd = large_message_clamd(LIMIT)
    yield clamd
    clamd.close()


@pytest.fixture(scope="module")
def big_message() -> bytes:
    data = os.urandom(ATTACHMENT)
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: a@partner.example\r\nTo: " + MAILBOX.encode() + b"\r\nSubject: Akte\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nDie Akte im Anhang.\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=\"akte.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--b--\r\n")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, big_clamd: RunningClamd) -> Settings:
    return make_settings(tmp_path / "var", database_url,
                         smtp={"max_message_bytes": LIMIT},
                         scanning={"clamd_socket": str(big_clamd.socket_path)})


def test_clean_50_mb_attachment_is_scanned_and_delivered_in_bounded_memory(
        settings: Settings, big_message: bytes) -> None:
    services = build_services(settings, transport=RecordingTransport())
    try:
        with session_scope(services.sessions) as s:
            add_mailbox(s, MAILBOX, "Kita")
        qid = enqueue(services, [MAILBOX], big_message)
        tracemalloc.start()
        try:
            drain(services)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        message = load_message(services, qid)
        assert message.state == MessageState.DELIVERED, message.reason
        assert message.facts is not None and '"scan": "clean"' in message.facts
        # Stated in the README: linear in the message (about ten copies: the parsed tree,
        # the decoded parts, the sealed copies), not more.
        assert peak < 12 * len(big_message), f"peak {peak / 2**20:.0f} MiB"
        print(f"\npeak traced memory: {peak / 2**20:.0f} MiB for a "
              f"{len(big_message) / 2**20:.0f} MiB message")
    finally:
        services.sessions.kw["bind"].dispose()


def test_the_same_attachment_over_the_limit_gets_552(services: Services, big_message: bytes,
                                                     start_edge: object) -> None:
    edge = start_edge(max_message_bytes=len(big_message) - 1)  # type: ignore[operator]
    with smtplib.SMTP(*edge.inbound) as client:
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            client.sendmail("a@partner.example", [MAILBOX], big_message)
    assert refused.value.smtp_code == 552
