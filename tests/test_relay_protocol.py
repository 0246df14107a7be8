"""The SMTP relay client against a real sink: wire bytes, reply mapping, broken sessions.

No database here: these talk to SmtpRelayTransport directly. The pipeline-level behaviour
(deferral, bounces) is in test_relay_delivery.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.delivery.smtp_relay import SmtpRelayTransport, encode_data, wire_pieces
from gateway.delivery.transport import Reply, TransportError
from gateway.settings import (
    DeliverySettings,
    RelayRoute,
    Settings,
    SmtpSettings,
    TlsPolicy,
)
from tests.support.ports import free_port
from tests.support.sink import SmtpSink

RCPT_A = "a@partner.example"
RCPT_B = "b@partner.example"
RCPT_C = "c@partner.example"


def _settings(connect_timeout_seconds: float = 5) -> Settings:
    return Settings(smtp=SmtpSettings(hostname="relay.xgate.test"),
                    delivery=DeliverySettings(connect_timeout_seconds=connect_timeout_seconds))


def _route(port: int, tls: TlsPolicy = TlsPolicy.NONE) -> RelayRoute:
    return RelayRoute(domain="*", host="127.0.0.1", port=port, tls=tls)


def _send(sink: SmtpSink, recipients: list[str], data: bytes = b"Subject: t\r\n\r\nhi\r\n",
          mail_from: str = "sender@jugendamt.example") -> dict[str, Reply]:
    return SmtpRelayTransport(_settings()).send(_route(sink.port), mail_from, recipients, data)


# -- framing: CRLF only, dot-stuffed --------------------------------------------------------


@pytest.mark.parametrize(("data", "wire"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
    (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
    (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b".first\r\n.\r\n..two\r\nmid.dle\r\n", b"..first\r\n..\r\n...two\r\nmid.dle\r\n.\r\n"),
    (b"x\n.\ny", b"x\r\n..\r\ny\r\n.\r\n"),
    (b"x\r.\ry", b"x\r\n..\r\ny\r\n.\r\n"),
    (b"", b"\r\n.\r\n"),
])
def test_encode_data(data: bytes, wire: bytes) -> None:
    assert encode_data(data) == wire


def test_exact_bytes_at_the_sink(sink: SmtpSink) -> None:
    # Bare LF, bare CR, a lone dot, leading dots and a CRLF.CRLF look-alike in the body.
    data = (b"Subject: dots\r\nMessage-ID: <d@x>\r\n\r\n"
            b".leading\n..two\r.\r\nend of para\r\n.\r\n\r\n.\nlast")
    replies = _send(sink, [RCPT_A], data)
    assert replies == {RCPT_A: Reply(250, "2.0.0 Ok: queued as 1")}
    [got] = sink.deliveries
    assert got.wire_data == (b"Subject: dots\r\nMessage-ID: <d@x>\r\n\r\n"
                             b"..leading\r\n...two\r\n..\r\nend of para\r\n..\r\n\r\n"
                             b"..\r\nlast\r\n.\r\n")
    assert got.content == (b"Subject: dots\r\nMessage-ID: <d@x>\r\n\r\n"
                           b".leading\r\n..two\r\n.\r\nend of para\r\n.\r\n\r\n.\r\nlast\r\n")
    # Every line end in the whole session is CRLF.
    [transcript] = sink.transcripts()
    assert transcript.count(b"\n") == transcript.count(b"\r\n")
    assert transcript.count(b"\r") == transcript.count(b"\r\n")


def test_envelope_and_ehlo(sink: SmtpSink) -> None:
    _send(sink, [RCPT_A, RCPT_B], b"Subject: 8bit \xc3\xa4\r\n\r\nx\r\n")
    [got] = sink.deliveries
    assert got.mail_from == "sender@jugendamt.example"
    assert got.rcpt_tos == (RCPT_A, RCPT_B)
    assert "BODY=8BITMIME" in got.mail_options
    assert any(o.startswith("SIZE=") for o in got.mail_options)
    [transcript] = sink.transcripts()
    # smtplib writes EHLO and QUIT in lower case; SMTP verbs are case-insensitive.
    assert transcript.upper().startswith(b"EHLO RELAY.XGATE.TEST\r\n")
    assert transcript.upper().endswith(b"QUIT\r\n")


def test_seven_bit_mail_is_not_declared_8bitmime(sink: SmtpSink) -> None:
    _send(sink, [RCPT_A], b"Subject: plain\r\n\r\n" + (b"x" * 76 + b"\r\n") * 1000)
    [got] = sink.deliveries
    assert not any(o.startswith("BODY=") for o in got.mail_options)


def test_null_sender_is_sent_as_empty_path(sink: SmtpSink) -> None:
    _send(sink, [RCPT_A], mail_from="")
    [got] = sink.deliveries
    assert got.mail_from == ""
    assert b"MAIL FROM:<>" in sink.transcripts()[0]


def test_non_ascii_address_uses_smtputf8(sink: SmtpSink) -> None:
    replies = _send(sink, ["jörg@partner.example"])
    assert replies["jörg@partner.example"].ok
    assert "SMTPUTF8" in sink.deliveries[0].mail_options


def test_address_with_line_break_is_never_sent(sink: SmtpSink) -> None:
    evil = "x@partner.example>\r\nRCPT TO:<victim@elsewhere.example"
    replies = _send(sink, [evil, RCPT_A])
    assert replies[evil].code == 553
    assert replies[RCPT_A].ok
    assert sink.deliveries[0].rcpt_tos == (RCPT_A,)


# -- replies mapped to recipients -----------------------------------------------------------


def test_refused_rcpts_get_their_own_reply(sink: SmtpSink) -> None:
    sink.rcpt_replies[RCPT_A] = "550 5.1.1 user unknown"
    sink.rcpt_replies[RCPT_B] = "450 4.2.1 mailbox busy"
    replies = _send(sink, [RCPT_A, RCPT_B, RCPT_C])
    assert replies == {RCPT_A: Reply(550, "5.1.1 user unknown"),
                       RCPT_B: Reply(450, "4.2.1 mailbox busy"),
                       RCPT_C: Reply(250, "2.0.0 Ok: queued as 1")}
    assert sink.deliveries[0].rcpt_tos == (RCPT_C,)


def test_all_rcpts_refused_sends_no_data(sink: SmtpSink) -> None:
    sink.rcpt_replies[RCPT_A] = "550 5.1.1 user unknown"
    sink.rcpt_replies[RCPT_B] = "451 4.3.0 later"
    replies = _send(sink, [RCPT_A, RCPT_B])
    assert {r: x.code for r, x in replies.items()} == {RCPT_A: 550, RCPT_B: 451}
    assert sink.deliveries == []
    assert b"DATA" not in sink.transcripts()[0].upper()


@pytest.mark.parametrize("reply", ["451 4.3.0 try later", "554 5.7.1 not from you"])
def test_mail_from_refusal_applies_to_every_recipient(sink: SmtpSink, reply: str) -> None:
    sink.mail_reply = reply
    code, text = reply.split(" ", 1)
    replies = _send(sink, [RCPT_A, RCPT_B])
    assert replies == {RCPT_A: Reply(int(code), text), RCPT_B: Reply(int(code), text)}
    assert b"RCPT" not in sink.transcripts()[0]


@pytest.mark.parametrize("reply", ["452 4.3.1 out of space", "554 5.6.0 content rejected"])
def test_data_refusal_applies_to_every_accepted_recipient(sink: SmtpSink, reply: str) -> None:
    sink.rcpt_replies[RCPT_A] = "550 5.1.1 user unknown"
    sink.data_replies[RCPT_B] = reply
    code, text = reply.split(" ", 1)
    replies = _send(sink, [RCPT_A, RCPT_B, RCPT_C])
    assert replies == {RCPT_A: Reply(550, "5.1.1 user unknown"),
                       RCPT_B: Reply(int(code), text), RCPT_C: Reply(int(code), text)}
    assert sink.deliveries == []


def test_421_at_rcpt_defers_the_whole_transaction(sink: SmtpSink) -> None:
    sink.rcpt_replies[RCPT_B] = "421 4.3.2 shutting down"
    replies = _send(sink, [RCPT_A, RCPT_B, RCPT_C])
    assert {r.code for r in replies.values()} == {421}
    assert sink.deliveries == []


# -- broken sessions become TransportError ---------------------------------------------------


def test_connection_refused() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TransportError) as err:
        SmtpRelayTransport(_settings()).send(_route(port), "a@x.example", [RCPT_A], b"x\r\n")
    assert not err.value.permanent
    assert f"127.0.0.1:{port}" in err.value.reason


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes, bool], int]]:
    """A TCP server that sends a script, then either holds the connection or drops it."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(script: bytes, hold: bool) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(script)
                if hold:
                    stop.wait(30)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
    for listener in listeners:
        listener.close()


def test_silent_server_times_out(raw_server: Callable[[bytes, bool], int]) -> None:
    port = raw_server(b"", True)
    transport = SmtpRelayTransport(_settings(connect_timeout_seconds=0.5))
    started = time.monotonic()
    with pytest.raises(TransportError) as err:
        transport.send(_route(port), "a@x.example", [RCPT_A], b"x\r\n")
    assert time.monotonic() - started < 5
    assert "timed out" in err.value.reason


def test_dropped_session_is_transient(raw_server: Callable[[bytes, bool], int]) -> None:
    port = raw_server(b"220 hello\r\n", False)
    with pytest.raises(TransportError) as err:
        SmtpRelayTransport(_settings()).send(_route(port), "a@x.example", [RCPT_A], b"x\r\n")
    assert not err.value.permanent


def test_refused_greeting_is_transient(raw_server: Callable[[bytes, bool], int]) -> None:
    port = raw_server(b"554 5.3.2 go away\r\n", True)
    with pytest.raises(TransportError) as err:
        SmtpRelayTransport(_settings()).send(_route(port), "a@x.example", [RCPT_A], b"x\r\n")
    assert "554 5.3.2 go away" in err.value.reason
    assert not err.value.permanent


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"x" * 50,
                                 b"\xc3\xa4"]), max_size=30).map(b"".join))
def test_encode_data_is_the_plain_rule_for_any_text(data: bytes) -> None:
    # The fast path for a message with CRLF line ends only and no leading dot gives what
    # the rule gives: CRLF line ends, dot-stuffed, terminated.
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert encode_data(data) == re.sub(rb"(?m)^\.", b"..", normalised) + b".\r\n"


def test_the_usual_message_goes_on_the_wire_without_a_copy() -> None:
    # CRLF throughout and no line starting with a dot: the stored bytes themselves are sent,
    # then the terminator (a 13.7 MB message copied only to append five bytes, before).
    data = b"Subject: x\r\n\r\nein Punkt. mitten in der Zeile\r\nzwei\r\n"
    content, terminator = wire_pieces(data)
    assert content is data and terminator == b".\r\n"
    content, terminator = wire_pieces(b"Subject: x\r\n\r\nohne Zeilenende")
    assert terminator == b"\r\n.\r\n"
    content, _ = wire_pieces(b"Subject: x\r\n\r\n.Punkt am Anfang\r\n")
    assert content == b"Subject: x\r\n\r\n..Punkt am Anfang\r\n"
