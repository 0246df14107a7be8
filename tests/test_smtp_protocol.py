"""The SMTP edge's protocol hardening, over real sockets against the real listeners."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from gateway.db import session_scope
from gateway.models import Message
from gateway.services import Services
from gateway.settings import RelayRoute
from gateway.smtp.handler import ListenerKind
from mailboxes.directory import add_mailbox, mailbox_id_for
from mailboxes.store import messages_in
from tests.support.pipeline import drain
from tests.support.smtp_client import RawSMTP, client_context, count_messages, make_message
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    MAILBOX,
    TLS_NAME,
    Edge,
    edge_fixture,
    mailbox_fixture,
    start_edge_fixture,
    tls_files_fixture,
)


def _envelope(client: RawSMTP) -> None:
    assert client.reply().code == 220
    client.ehlo()
    assert client.command("MAIL FROM:<a@partner.example>").code == 250


def test_greeting_names_host_not_software_version(edge: Edge) -> None:
    client = RawSMTP(edge.inbound)
    greeting = client.reply()
    client.close()
    assert greeting.code == 220
    assert greeting.text == "xgate.test ESMTP xgate"


def test_unknown_recipient_is_refused_with_550(edge: Edge, mailbox: str) -> None:
    with smtplib.SMTP(*edge.inbound) as client:
        client.ehlo()
        client.mail("a@partner.example")
        code, text = client.rcpt("nobody@jugendamt.example")
        assert (code, text[:5]) == (550, b"5.1.1")
        # Not an open relay either.
        assert client.rcpt("someone@elsewhere.example")[0] == 550
        assert client.rcpt(mailbox)[0] == 250


@pytest.mark.parametrize("address", [
    "no-domain", "a@b", "a b@jugendamt.example", '"a b"@jugendamt.example',
    "a@[192.0.2.1]", "x" * 65 + "@jugendamt.example", "a@-bad-.example",
])
def test_recipient_address_syntax_is_checked(edge: Edge, address: str) -> None:
    client = RawSMTP(edge.inbound)
    _envelope(client)
    reply = client.command(f"RCPT TO:<{address}>")
    client.close()
    # 501 5.1.3 from us, or aiosmtpd's 553 5.1.3 for what its parser cannot read at all.
    assert reply.code in (501, 553)
    assert reply.text.startswith("5.1.3")


def test_sender_address_syntax_is_checked(edge: Edge) -> None:
    client = RawSMTP(edge.inbound)
    client.reply()
    client.ehlo()
    reply = client.command("MAIL FROM:<a@b>")
    assert (reply.code, reply.text[:5]) == (501, "5.1.7")
    # The null sender (bounces) is fine inbound.
    assert client.command("MAIL FROM:<>").code == 250
    client.close()


def test_ten_thousand_recipients_past_the_limit_get_452(services: Services,
                                                        edge: Edge) -> None:
    # Every address of our own domain is acceptable: mail for it goes to the office's server.
    services.settings.delivery.routes = [
        RelayRoute(domain="jugendamt.example", host="127.0.0.1", port=1, internal=True)]
    limit = services.settings.smtp.max_recipients
    client = RawSMTP(edge.inbound)
    _envelope(client)
    codes: list[int] = []
    # Sent in batches and read in between, so neither side's socket buffer fills up.
    for start in range(0, 10_000, 500):
        client.send(b"".join(f"RCPT TO:<r{i}@jugendamt.example>\r\n".encode()
                             for i in range(start, start + 500)))
        replies = client.replies(500)
        codes += [r.code for r in replies]
        assert all(r.text.startswith("4.5.3") for r in replies if r.code == 452)
    assert codes == [250] * limit + [452] * (10_000 - limit)
    assert client.command("DATA").code == 354
    client.send(make_message() + b".\r\n")
    reply = client.reply()
    assert reply.code == 250
    assert client.command("QUIT").code == 221
    queue_id = reply.text.rsplit(" ", 1)[1]
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        assert len(message.recipients) == limit


def test_repeated_recipient_counts_against_the_limit(services: Services,
                                                     start_edge: Callable[..., Edge],
                                                     mailbox: str) -> None:
    other = "pflegekinder@jugendamt.example"
    with session_scope(services.sessions) as session:
        add_mailbox(session, other, "Pflegekinder")
    edge = start_edge(max_recipients=3)
    client = RawSMTP(edge.inbound)
    _envelope(client)
    replies = [client.command(f"RCPT TO:<{address}>")
               for address in (mailbox, mailbox, other, mailbox, other)]
    assert [(r.code, r.text[:5]) for r in replies] == [
        (250, "2.1.5"), (250, "2.1.5"), (250, "2.1.5"), (452, "4.5.3"), (452, "4.5.3")]
    assert client.command("DATA").code == 354
    client.send(make_message() + b".\r\n")
    assert client.reply().code == 250
    client.close()
    # Each distinct recipient once: one queue recipient, one copy in each mailbox.
    with session_scope(services.sessions) as session:
        message = session.scalars(select(Message)).one()
        assert sorted(r.address for r in message.recipients) == sorted([mailbox, other])
    drain(services)
    with session_scope(services.sessions) as session:
        for address in (mailbox, other):
            found = mailbox_id_for(session, address)
            assert found is not None
            assert len(messages_in(session, found[0])) == 1


def test_ten_thousand_identical_recipients_get_452_past_the_limit(services: Services,
                                                                  edge: Edge,
                                                                  mailbox: str) -> None:
    limit = services.settings.smtp.max_recipients
    client = RawSMTP(edge.inbound)
    _envelope(client)
    codes: list[int] = []
    for _ in range(0, 10_000, 500):
        client.send(f"RCPT TO:<{mailbox}>\r\n".encode() * 500)
        codes += [r.code for r in client.replies(500)]
    assert codes == [250] * limit + [452] * (10_000 - limit)
    assert client.command("QUIT").code == 221


def test_connections_past_the_limit_get_421(start_edge: Callable[..., Edge]) -> None:
    edge = start_edge(max_connections=2)
    first, second = RawSMTP(edge.inbound), RawSMTP(edge.inbound)
    assert first.reply().code == 220
    assert second.reply().code == 220
    third = RawSMTP(edge.inbound)
    refused = third.replies_until_closed()
    assert [(r.code, r.text[:5]) for r in refused] == [(421, "4.7.0")]
    # The limit is per listener: submission still has room.
    other = RawSMTP(edge.submission)
    assert other.reply().code == 220
    other.close()
    # A slot freed is a slot available again.
    first.close()
    edge.wait_connections(ListenerKind.INBOUND, 1)
    fourth = RawSMTP(edge.inbound)
    assert fourth.reply().code == 220
    for client in (second, third, fourth):
        client.close()


def test_command_line_too_long_is_refused(edge: Edge) -> None:
    client = RawSMTP(edge.inbound)
    client.reply()
    client.ehlo()
    reply = client.command("NOOP " + "x" * 5000)
    assert reply.code == 500
    # The session goes on; the over-long line was not half-executed.
    assert client.command("NOOP").code == 250
    client.close()


def test_data_line_too_long_is_refused(services: Services, edge: Edge, mailbox: str) -> None:
    client = RawSMTP(edge.inbound)
    _envelope(client)
    client.command(f"RCPT TO:<{mailbox}>")
    assert client.command("DATA").code == 354
    client.send(make_message(body=b"y" * 5000 + b"\r\n") + b".\r\n")
    reply = client.reply()
    assert reply.code == 500
    assert client.command("QUIT").code == 221
    assert count_messages(services) == 0


def test_commands_pipelined_after_starttls_are_discarded(edge: Edge,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.smtp")
    client = RawSMTP(edge.inbound)
    client.reply()
    client.ehlo()
    # One write: the injected commands sit in the server's plaintext buffer at STARTTLS.
    client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@attacker.example>\r\n")
    assert client.reply().code == 220
    client.starttls(client_context(edge.cert), TLS_NAME)
    # Had RSET or MAIL run, their replies would come before EHLO's.
    reply = client.command("EHLO client.partner.example")
    assert reply.code == 250
    assert reply.lines[0] == "xgate.test"
    # And no MAIL from before the handshake is in effect inside the TLS session.
    assert client.command(f"RCPT TO:<{MAILBOX}>").code == 503
    client.close()
    assert "discarded commands pipelined after STARTTLS" in caplog.text


def test_failed_tls_handshake_ends_only_that_connection(edge: Edge) -> None:
    client = RawSMTP(edge.inbound)
    client.reply()
    client.ehlo()
    assert client.command("STARTTLS").code == 220
    client.send(b"this is not a TLS client hello\r\n" * 4)
    # The server may answer with a TLS alert; either way it closes the connection.
    with contextlib.suppress(ConnectionResetError):
        while client.sock.recv(1024):
            pass
    client.close()
    edge.wait_idle()
    other = RawSMTP(edge.inbound)
    assert other.reply().code == 220
    other.close()


def test_inbound_offers_no_auth(edge: Edge) -> None:
    with smtplib.SMTP(*edge.inbound) as client:
        client.starttls(context=client_context(edge.cert))
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")[0] == 504


def test_idle_connection_times_out(start_edge: Callable[..., Edge]) -> None:
    edge = start_edge(timeout_seconds=0.3)
    client = RawSMTP(edge.inbound)
    client.reply()
    started = time.monotonic()
    assert client.sock.recv(1024) == b""
    assert time.monotonic() - started < 5
    client.close()


def test_noop_flood_is_cut_off(edge: Edge) -> None:
    client = RawSMTP(edge.inbound)
    client.reply()
    client.send(b"NOOP\r\n" * 50)
    replies = client.replies_until_closed()
    assert replies[-1].code == 421
    assert len(replies) < 50
