"""DATA at the SMTP edge: limits, content checks, smuggling, durability of the 250."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text

from crypto.at_rest import open_sealed
from gateway import audit
from gateway.db import session_scope
from gateway.models import AuditEntry, Direction, Message, MessageState, Recipient
from gateway.pipeline.worker import Worker
from gateway.queue.spool import content_context
from gateway.services import Services
from tests.support.smtp_client import RawSMTP, count_messages, make_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    MAILBOX,
    Edge,
    edge_fixture,
    mailbox_fixture,
    start_edge_fixture,
    tls_files_fixture,
)


def _open_data(edge: Edge, rcpt: str = MAILBOX) -> RawSMTP:
    client = RawSMTP(edge.inbound)
    assert client.reply().code == 220
    client.ehlo()
    assert client.command("MAIL FROM:<a@partner.example>").code == 250
    assert client.command(f"RCPT TO:<{rcpt}>").code == 250
    assert client.command("DATA").code == 354
    return client


def _send_raw(edge: Edge, content: bytes) -> tuple[int, str]:
    """Send ``content`` as DATA exactly as given (no dot-stuffing, no line-ending fixes)."""
    client = _open_data(edge)
    client.send(content + b"\r\n.\r\n")
    reply = client.reply()
    assert client.command("QUIT").code == 221
    client.close()
    return reply.code, reply.text


def _stored_content(services: Services, queue_id: str) -> bytes:
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        return open_sealed(services.master_key, message.content.sealed,
                           content_context(queue_id))


def test_250_names_the_queue_id_of_the_committed_row(services: Services, edge: Edge,
                                                     mailbox: str) -> None:
    with smtplib.SMTP(*edge.inbound) as client:
        client.ehlo("mta.partner.example")
        client.mail("a@partner.example")
        client.rcpt(mailbox)
        code, reply = client.data(make_message())
    assert code == 250
    prefix = b"2.0.0 Ok: queued as "
    assert reply.startswith(prefix)
    queue_id = reply[len(prefix):].decode()
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        assert message.direction == Direction.INBOUND
        assert message.state == MessageState.RECEIVED
        assert message.mail_from == "a@partner.example"
        assert message.helo == "mta.partner.example"
        assert message.peer.startswith("127.0.0.1:")
        assert message.auth_user is None
        assert [r.address for r in message.recipients] == [mailbox]
        entry = session.scalars(select(AuditEntry).where(AuditEntry.queue_id == queue_id)).one()
        assert (entry.actor, entry.action) == ("smtp:inbound", "received")
        assert audit.verify(session).ok
    stored = _stored_content(services, queue_id)
    assert stored.startswith(b"Received: from mta.partner.example ([127.0.0.1])\r\n")


def test_null_sender_is_stored_as_empty(services: Services, edge: Edge, mailbox: str) -> None:
    client = RawSMTP(edge.inbound)
    client.reply()
    client.ehlo()
    assert client.command("MAIL FROM:<>").code == 250
    assert client.command(f"RCPT TO:<{mailbox}>").code == 250
    assert client.command("DATA").code == 354
    client.send(make_message() + b".\r\n")
    assert client.reply().code == 250
    client.close()
    with session_scope(services.sessions) as session:
        assert session.scalars(select(Message.mail_from)).one() == ""


def test_message_over_the_size_limit_gets_552(services: Services,
                                              start_edge: Callable[..., Edge],
                                              mailbox: str) -> None:
    edge = start_edge(max_message_bytes=10_000)
    with smtplib.SMTP(*edge.inbound) as client:
        client.ehlo()
        assert client.has_extn("size")
        assert client.esmtp_features["size"] == "10000"
        # Announced too big: refused before any data is sent. Both replies carry the
        # enhanced status code (RFC 3463 5.3.4), which aiosmtpd's own wording lacks.
        code, text = client.mail("a@partner.example", ["SIZE=20000"])
        assert (code, text[:6]) == (552, b"5.3.4 ")
        # Not announced, but too big all the same.
        client.rset()
        client.mail("a@partner.example")
        client.rcpt(mailbox)
        code, text = client.data(make_message(body=(b"z" * 98 + b"\r\n") * 200))
        assert (code, text[:6]) == (552, b"5.3.4 ")
        # Under the limit is fine, on the same connection.
        client.mail("a@partner.example")
        client.rcpt(mailbox)
        assert client.data(make_message())[0] == 250
    assert count_messages(services) == 1


def test_header_block_of_a_megabyte_gets_552(services: Services, edge: Edge,
                                             mailbox: str) -> None:
    filler = b"".join(b"X-Filler-%05d: " % i + b"h" * 900 + b"\r\n" for i in range(1100))
    assert len(filler) > 1_000_000
    code, reply = _send_raw(edge, make_message(extra_headers=filler))
    assert (code, reply[:5]) == (552, "5.3.4")
    assert count_messages(services) == 0


def _header_block(size: int) -> bytes:
    """A header block of exactly ``size`` bytes (including its last CRLF), short lines."""
    block = b"From: a@partner.example\r\n"
    while len(block) < size:
        room = size - len(block)
        # A header line is "X-Fill: " + value + CRLF, 10 bytes plus the value.
        take = room if room <= 500 else min(490, room - 20)
        block += b"X-Fill: " + b"f" * (take - 10) + b"\r\n"
    assert len(block) == size
    return block


def test_header_block_limit_is_exact(services: Services, start_edge: Callable[..., Edge],
                                     mailbox: str) -> None:
    edge = start_edge(max_header_bytes=2000)
    assert _send_raw(edge, _header_block(2000) + b"\r\nbody")[0] == 250
    assert _send_raw(edge, _header_block(2001) + b"\r\nbody")[0] == 552
    # Headers with an empty body.
    assert _send_raw(edge, _header_block(2001))[0] == 552
    assert count_messages(services) == 1


# Each sequence tries to end the first message early so that what follows becomes a
# second, smuggled message (SMTP smuggling, 2023). Another MTA on the way might treat it as
# the end of DATA; we must never see two messages, or store either.
SMUGGLING = [b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r"]
SMUGGLED = (b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<" + MAILBOX.encode() + b">\r\n"
            b"DATA\r\nFrom: ceo@jugendamt.example\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")


def _smuggle(edge: Edge, separator: bytes) -> list[tuple[int, str]]:
    client = _open_data(edge)
    client.send(b"From: a@partner.example\r\nSubject: first\r\n\r\nhello" + separator
                + SMUGGLED + b"QUIT\r\n")
    replies = [(r.code, r.text) for r in client.replies_until_closed()]
    client.close()
    return replies


@pytest.mark.parametrize("separator", SMUGGLING, ids=repr)
def test_smuggling_sequences_are_refused_and_nothing_is_stored(
        services: Services, edge: Edge, mailbox: str, separator: bytes) -> None:
    replies = _smuggle(edge, separator)
    # One reply for the whole DATA (no 250s for a second MAIL/RCPT/DATA), then QUIT's.
    assert [code for code, _ in replies] == [550, 221]
    assert replies[0][1].startswith("5.6.11")
    assert count_messages(services) == 0


def test_a_real_end_of_data_does_make_two_messages(services: Services, edge: Edge,
                                                   mailbox: str) -> None:
    # The control for the test above: with a proper CRLF.CRLF the same bytes are two
    # messages, so that test would notice a smuggled one.
    replies = _smuggle(edge, b"\r\n.\r\n")
    assert [code for code, _ in replies] == [250, 250, 250, 354, 250, 221]
    assert count_messages(services) == 2


@pytest.mark.parametrize("content", [
    b"Subject: a\rX-Injected: y\r\nFrom: a@partner.example\r\n\r\nbody",
    b"Subject: a\nX-Injected: y\r\nFrom: a@partner.example\r\n\r\nbody",
    b"From: a@partner.example\nSubject: unix line endings\n\nbody\n",
    b"From: a@partner.example\r\n\r\nbody with a bare CR\r in the middle",
    b"From: a@partner.example\r\n\r\nbody ending in a bare CR\r",
], ids=["header-cr", "header-lf", "unix", "body-cr", "trailing-cr"])
def test_bare_cr_or_lf_anywhere_is_refused(services: Services, edge: Edge, mailbox: str,
                                           content: bytes) -> None:
    code, reply = _send_raw(edge, content)
    assert (code, reply[:6]) == (550, "5.6.11")
    assert count_messages(services) == 0


# A script that writes Unix line ends: without a CRLF the whole message is one "line", so
# the line limit used to answer "500 Line too long" for a few hundred short lines.
UNIX_MESSAGE = (b"From: a@partner.example\nTo: kita@jugendamt.example\nSubject: unix\n\n"
                + b"Zeile mit Unix-Zeilenende\n" * 200)


@pytest.mark.parametrize(("content", "found"), [
    (UNIX_MESSAGE, "LF"),
    (UNIX_MESSAGE.replace(b"\n", b"\r"), "CR"),
    (b"From: a@partner.example\n\nshort\n", "LF"),
], ids=["long-lf", "long-cr", "short-lf"])
def test_bare_line_ends_are_named_not_called_too_long(
        services: Services, edge: Edge, mailbox: str, content: bytes, found: str) -> None:
    code, reply = _send_raw(edge, content)
    assert (code, reply) == (550, f"5.6.11 Line ends must be CRLF (bare {found} received)")
    assert count_messages(services) == 0


def test_a_long_line_with_crlf_is_still_too_long(services: Services, edge: Edge,
                                                mailbox: str) -> None:
    code, reply = _send_raw(edge, make_message(body=b"x" * 1000 + b"\r\n"))
    assert code == 500 and "Line too long" in reply
    assert count_messages(services) == 0


def test_bare_lf_before_a_dot_never_ends_the_data(services: Services, edge: Edge,
                                                  mailbox: str) -> None:
    """A client with Unix line ends throughout ends its data with LF "." LF: that is not the
    end of DATA (it would be the smuggling sequence). Only CRLF "." CRLF ends it, and the
    answer names the bare LF; the second message stays inside the refused first one."""
    client = _open_data(edge)
    client.send(UNIX_MESSAGE + b".\nMAIL FROM:<x@partner.example>\n")
    client.send(b"more\r\n.\r\n")
    reply = client.reply()
    assert (reply.code, reply.text) == (550, "5.6.11 Line ends must be CRLF (bare LF received)")
    assert client.command("QUIT").code == 221
    client.close()
    assert count_messages(services) == 0


def test_nul_bytes_are_refused(services: Services, edge: Edge, mailbox: str) -> None:
    code, reply = _send_raw(edge, make_message(body=b"before\x00after\r\n"))
    assert (code, reply[:5]) == (550, "5.6.0")
    assert count_messages(services) == 0


def test_8bit_data_without_declaration_is_stored_as_is(services: Services, edge: Edge,
                                                       mailbox: str) -> None:
    body = "Grüße aus dem Jugendamt, Frau Müller\r\n".encode("latin-1") + b"\xff\xfe\x80\r\n"
    message = make_message(body=body)
    code, reply = _send_raw(edge, message)
    assert code == 250
    stored = _stored_content(services, reply.rsplit(" ", 1)[1])
    assert stored.endswith(message + b"\r\n")


def test_dot_stuffed_lines_are_unstuffed(services: Services, edge: Edge, mailbox: str) -> None:
    message = make_message(body=b"line one\r\n.hidden dot line\r\n..two dots\r\n")
    with smtplib.SMTP(*edge.inbound) as client:
        client.ehlo()
        client.mail("a@partner.example")
        client.rcpt(mailbox)
        code, reply = client.data(message)  # smtplib dot-stuffs
    assert code == 250
    assert _stored_content(services, reply.decode().rsplit(" ", 1)[1]).endswith(message)


MALFORMED = {
    "no-boundary": (b"From: a@partner.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                    b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n"),
    "boundary-never-used": (
        b"From: a@partner.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--wrong\r\nContent-Type: text/plain\r\n\r\npart\r\n--wrong--\r\n"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_mime_is_accepted_then_quarantined(services: Services, edge: Edge,
                                                     mailbox: str, name: str) -> None:
    code, reply = _send_raw(edge, MALFORMED[name])
    assert code == 250
    queue_id = reply.rsplit(" ", 1)[1]
    assert Worker(services, "w").process_one()
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        assert message.state == MessageState.QUARANTINED
        assert message.reason and "malformed MIME" in message.reason


def test_disconnect_mid_data_stores_nothing(services: Services, edge: Edge,
                                            mailbox: str) -> None:
    client = _open_data(edge)
    # Everything but the final CRLF: a lone "." not yet ended is not the end of DATA.
    client.send(make_message() + b".")
    client.close()
    edge.wait_idle()
    assert count_messages(services) == 0
    # The listener is unharmed.
    code, _ = _send_raw(edge, make_message())
    assert code == 250
    assert count_messages(services) == 1


@pytest.mark.parametrize("table", ["message_content", "audit_log"])
def test_storage_failure_gets_451_and_leaves_no_row(services: Services, edge: Edge,
                                                    mailbox: str, table: str) -> None:
    # A real failure halfway through the transaction: the messages row is inserted, then
    # the insert into the dropped table fails.
    engine = services.sessions.kw["bind"]
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    client = _open_data(edge)
    client.send(make_message() + b".\r\n")
    reply = client.reply()
    assert (reply.code, reply.text) == (
        451, "4.3.0 Temporary local problem, please try again later")
    # The session survives for the client's retry.
    assert client.command("RSET").code == 250
    client.close()
    with session_scope(services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert session.scalar(select(func.count()).select_from(Recipient)) == 0


def test_slow_but_steady_upload_outlasts_the_idle_timeout(
        services: Services, start_edge: Callable[..., Edge], mailbox: str) -> None:
    """The timeout bounds silence, not the whole transfer: a large message on a slow line
    keeps the session alive as long as data keeps coming."""
    import time

    edge = start_edge(timeout_seconds=1.0)
    client = _open_data(edge)
    message = make_message()
    pieces = [message[i:i + 20] for i in range(0, len(message), 20)]
    started = time.monotonic()
    for piece in pieces:
        client.send(piece)
        time.sleep(0.4)
        if time.monotonic() - started > 2.5:
            break
    assert time.monotonic() - started > 1.0, "the upload must take longer than the timeout"
    client.send(b"".join(pieces[pieces.index(piece) + 1:]) + b".\r\n")
    assert client.reply().code == 250
    assert count_messages(services) == 1


def test_silence_mid_data_ends_the_session_and_stores_nothing(
        services: Services, start_edge: Callable[..., Edge], mailbox: str) -> None:
    edge = start_edge(timeout_seconds=0.5)
    client = _open_data(edge)
    client.send(make_message()[:40])
    edge.wait_idle()  # the listener closes the silent connection
    assert count_messages(services) == 0
