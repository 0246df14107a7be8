"""From a partner's SMTP client into a shared mailbox, and what is left on disk afterwards."""

from __future__ import annotations

import secrets
import smtplib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from gateway.consent.actions import record_release, record_revocation
from gateway.consent.records import ReleaseInput, read_release
from gateway.db import is_sqlite, session_scope
from gateway.models import Message, MessageState
from gateway.pipeline.worker import Worker
from gateway.policy.consent import RecipientRef
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.store import messages_in, read_message
from tests.support.pipeline import without_result_headers
from tests.support.postgres import PostgresServer
from tests.support.smtp_client import client_context, make_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    start_edge_fixture,
    tls_files_fixture,
)

MAILBOX = "kindertagespflege@jugendamt.example"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this module alone.

    The shared server holds every other test's database: a CHECKPOINT there flushes all of
    them (tens of seconds), and a scan of its data directory would have to leave parts out.
    Here the whole directory belongs to these tests and is scanned in full.
    """
    server = PostgresServer.start_migrated()
    yield server
    server.stop()


@pytest.fixture
def database_url(database_url: str, request: pytest.FixtureRequest) -> str:
    """conftest's backends, with PostgreSQL moved to this module's own server."""
    if is_sqlite(database_url):
        return database_url
    server: PostgresServer = request.getfixturevalue("own_postgres")
    return server.create_database()


def _deliver(services: Services, edge: Edge, sender: str, message: bytes) -> tuple[int, str]:
    """Send over STARTTLS to the inbound listener, then let a worker process the message."""
    with session_scope(services.sessions) as session:
        mailbox_id = add_mailbox(session, MAILBOX, "Kindertagespflege").id
    with smtplib.SMTP(*edge.inbound) as client:
        client.starttls(context=client_context(edge.cert))
        client.ehlo("mta.partner.example")
        client.mail(sender)
        client.rcpt(MAILBOX)
        code, reply = client.data(message)
    assert code == 250
    assert Worker(services, "w").process_one()
    return mailbox_id, reply.decode().rsplit(" ", 1)[1]


def test_message_arrives_in_the_mailbox(services: Services, edge: Edge) -> None:
    message = make_message(to=MAILBOX, subject="Hilfeplan Familie K.",
                           body=b"Anbei der Hilfeplan.\r\n.Zeile mit Punkt\r\n")
    mailbox_id, queue_id = _deliver(services, edge, "asd@jugendamt-nachbar.example", message)
    with session_scope(services.sessions) as session:
        message_row = session.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        assert message_row.state == MessageState.DELIVERED
        stored = messages_in(session, mailbox_id)
        assert len(stored) == 1
        assert stored[0].mail_from == "asd@jugendamt-nachbar.example"
        content = without_result_headers(read_message(services.master_key, stored[0]))
    assert content.startswith(b"Received: from mta.partner.example ([127.0.0.1])\r\n"
                              b"\tby xgate.test (xgate) with ESMTPS;")
    assert content.endswith(message)


def _files_containing(root: Path, needles: list[bytes]) -> dict[bytes, list[Path]]:
    """Which regular files under ``root`` contain each needle."""
    hits: dict[bytes, list[Path]] = {needle: [] for needle in needles}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        for needle in needles:
            if needle in data:
                hits[needle].append(path)
    return hits


def _record_and_revoke_release(services: Services, case: str, child: str, grantor: str,
                               purpose: str) -> None:
    data = ReleaseInput(case=case, data_subjects=(child,), grantor_name=grantor,
                        grantor_role="parent", categories=("Hilfeplan",),
                        recipients=(RecipientRef("address", "team@beratung.example"),),
                        purpose=purpose, valid_from=date(2026, 1, 1),
                        valid_until=date(2026, 12, 31))
    with session_scope(services.sessions) as session:
        recorded = record_release(session, services.master_key, services.settings, data,
                                  document=None, actor="sb", now=services.clock())
    with session_scope(services.sessions) as session:
        record_revocation(session, services.master_key, recorded.version.release.id,
                          actor="sb", reason="Widerruf", now=services.clock())
    with session_scope(services.sessions) as session:
        views = read_release(session, services.master_key, recorded.version.release.id,
                             actor="sb", via="cli")
    assert [v.release.data_subjects for v in views] == [(child,), (child,)]


def _checkpoint(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Everything in shared buffers goes to the data files now, not at some later time.
        conn.execute(text("CHECKPOINT"))


def test_no_plaintext_at_rest(services: Services, edge: Edge, tmp_path: Path,
                              request: pytest.FixtureRequest) -> None:
    marker = f"XGATE-PLAINTEXT-{secrets.token_hex(16)}"
    # Envelope senders are stored in clear on purpose: finding this one proves the scan
    # reads the files where the rows are.
    sender = f"sender-{secrets.token_hex(8)}@partner.example"
    # Small on purpose: PostgreSQL compresses (TOAST) values over ~2 kB, which would hide a
    # plaintext copy from a byte scan.
    message = make_message(to=MAILBOX, sender=sender, subject=f"Gutachten {marker}",
                           body=f"Vertraulich: {marker}\r\n".encode())
    mailbox_id, _ = _deliver(services, edge, sender, message)
    with session_scope(services.sessions) as session:
        (stored,) = messages_in(session, mailbox_id)
        assert marker.encode() in read_message(services.master_key, stored)
    # A release from confidentiality: the child's name, the grantor and the purpose are
    # sealed like message content, in every version; the case reference is clear on purpose
    # (the gate looks it up), so finding it proves the scan reads the register's rows.
    names = [f"Kind-{secrets.token_hex(8)}", f"Mutter-{secrets.token_hex(8)}",
             f"Zweck-{secrets.token_hex(8)}"]
    case = f"51.2-{secrets.randbelow(10**6):06d}/2026"
    _record_and_revoke_release(services, case, *names)
    # The test's data dir (keys, and on SQLite the database with its -wal and -shm files).
    roots = [tmp_path]
    if is_sqlite(services.settings.database.url):
        assert (tmp_path / "xgate.db").exists()
    else:
        _checkpoint(services.sessions.kw["bind"])
        server: PostgresServer = request.getfixturevalue("own_postgres")
        # The data directory and, next to it, the server's log.
        roots.append(server.datadir.parent)
    found_sender: list[Path] = []
    found_case: list[Path] = []
    for root in roots:
        hits = _files_containing(root, [marker.encode(), sender.encode(), case.encode(),
                                        *(n.encode() for n in names)])
        assert hits[marker.encode()] == [], f"plaintext found under {root}"
        for name in names:
            assert hits[name.encode()] == [], f"{name.split('-')[0]} in clear under {root}"
        found_sender += hits[sender.encode()]
        found_case += hits[case.encode()]
    assert found_sender, "the scan did not see the database's files"
    assert found_case, "the scan did not see the consent register's rows"
