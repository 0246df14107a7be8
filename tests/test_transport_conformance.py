"""What every Transport promises (gateway/delivery/transport.py), run over each
implementation: the real SMTP relay against a sink on loopback, and the recording double.

The deliver stage records a relay delivery in ``on_replies``; for that record to close the
window for a duplicate, the callback must come once, with the replies ``send`` returns, and
before the session is ended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.delivery.transport import RecordingTransport, Reply, Transport, TransportError
from gateway.settings import DeliverySettings, RelayRoute, Settings, SmtpSettings
from tests.support.ports import free_port
from tests.support.sink import SmtpSink

MakeSink = Callable[..., SmtpSink]
OK = "ok@partner.example"
REFUSED = "refused@partner.example"


def _transport(kind: str, sink: SmtpSink) -> tuple[Transport, RelayRoute]:
    route = RelayRoute(domain="*", host="127.0.0.1", port=sink.port)
    if kind == "smtp":
        settings = Settings(smtp=SmtpSettings(hostname="relay.xgate.test"),
                            delivery=DeliverySettings(connect_timeout_seconds=5))
        return SmtpRelayTransport(settings), route
    return RecordingTransport(replies={REFUSED: Reply(550, "5.1.1 user unknown")}), route


@pytest.mark.parametrize("kind", ["smtp", "recording"])
def test_on_replies_comes_once_with_the_replies_before_the_session_ends(
        kind: str, make_sink: MakeSink) -> None:
    sink = make_sink(rcpt_replies={REFUSED: "550 5.1.1 user unknown"})
    transport, route = _transport(kind, sink)
    calls: list[dict[str, Reply]] = []
    quit_seen: list[bool] = []

    def record(replies: Mapping[str, Reply]) -> None:
        calls.append(dict(replies))
        quit_seen.append(any(b"\r\nquit\r\n" in wire.lower() for wire in sink.live_transcripts()))

    replies = transport.send(route, "a@jugendamt.example", [OK, REFUSED],
                             b"Subject: t\r\n\r\nhi\r\n", on_replies=record)
    assert calls == [replies]
    assert replies[OK].ok and replies[REFUSED].code == 550
    assert quit_seen == [False]


@pytest.mark.parametrize("kind", ["smtp", "recording"])
def test_an_error_in_on_replies_propagates_unchanged(kind: str, make_sink: MakeSink) -> None:
    sink = make_sink()
    transport, route = _transport(kind, sink)

    class RecordFailed(Exception):
        pass

    def record(_replies: Mapping[str, Reply]) -> None:
        raise RecordFailed

    with pytest.raises(RecordFailed):
        transport.send(route, "a@jugendamt.example", [OK], b"x\r\n", on_replies=record)
    if kind == "smtp":
        # The session still ends politely: the exchange itself was complete.
        [wire] = sink.transcripts(1)
        assert wire.lower().endswith(b"\r\nquit\r\n")


@pytest.mark.parametrize("kind", ["smtp", "recording"])
def test_on_replies_is_not_called_when_nothing_was_sent(kind: str) -> None:
    route = RelayRoute(domain="*", host="127.0.0.1", port=free_port())
    transport: Transport
    if kind == "smtp":
        transport = SmtpRelayTransport(Settings(
            delivery=DeliverySettings(connect_timeout_seconds=5)))
    else:
        transport = RecordingTransport(error=TransportError("connection refused"))
    calls: list[Mapping[str, Reply]] = []
    with pytest.raises(TransportError):
        transport.send(route, "a@jugendamt.example", [OK], b"x\r\n", on_replies=calls.append)
    assert calls == []
