"""Each route TLS policy, end to end: queue -> worker -> SmtpRelayTransport -> sink.

What matters most: under required-with-verification a message is never sent in plaintext or
to an unverified server; it stays deferred with a reason that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.models import Direction, MessageState, RecipientState
from gateway.pipeline.worker import Worker
from gateway.services import Services
from gateway.settings import TlsPolicy
from tests.support.pipeline import enqueue, load_message, without_result_headers
from tests.support.pki import TestPki
from tests.support.sink import SmtpSink

MSG = (b"From: sachbearbeitung@jugendamt.example\r\nTo: x@partner.example\r\n"
       b"Subject: Hilfeplan\r\nMessage-ID: <tls@jugendamt.example>\r\n\r\nVertraulich\r\n")
RCPT = "x@partner.example"

RelayServices = Callable[..., Services]
MakeSink = Callable[..., SmtpSink]


def _send_one(services: Services) -> str:
    queue_id = enqueue(services, [RCPT], MSG, mail_from="sachbearbeitung@jugendamt.example",
                       direction=Direction.OUTBOUND)
    assert Worker(services, "w1").process_one()
    return queue_id


@pytest.mark.parametrize(("policy", "offer_tls", "expect_tls"), [
    (TlsPolicy.NONE, True, False),
    (TlsPolicy.OPPORTUNISTIC, True, True),
    (TlsPolicy.OPPORTUNISTIC, False, False),
])
def test_delivered_under_policy(relay_services: RelayServices, make_sink: MakeSink,
                                pki: TestPki, policy: TlsPolicy, offer_tls: bool,
                                expect_tls: bool) -> None:
    sink = make_sink(tls=pki.server if offer_tls else None)
    services = relay_services(sink, tls=policy)
    queue_id = _send_one(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    [got] = sink.deliveries
    assert got.tls is expect_tls
    assert without_result_headers(got.content) == MSG


def test_verified_tls_with_the_right_ca(relay_services: RelayServices, make_sink: MakeSink,
                                        pki: TestPki) -> None:
    sink = make_sink(tls=pki.server)
    services = relay_services(sink, tls=TlsPolicy.VERIFY, ca_file=pki.ca_file)
    queue_id = _send_one(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    [got] = sink.deliveries
    assert got.tls
    # Nothing but EHLO and STARTTLS went over the wire before encryption.
    [transcript] = sink.transcripts()
    assert transcript.upper().split(b"\r\n")[:2] == [b"EHLO XGATE.LOCALHOST", b"STARTTLS"]


@pytest.mark.parametrize("case", ["unknown-ca", "system-store", "wrong-name", "not-offered"])
def test_verification_failure_defers_and_sends_nothing(
        relay_services: RelayServices, make_sink: MakeSink, pki: TestPki, clock: FakeClock,
        case: str) -> None:
    ca_file: Path | None = pki.ca_file
    cert = pki.server
    if case == "unknown-ca":
        ca_file = pki.other_ca_file
    elif case == "system-store":
        ca_file = None
    elif case == "wrong-name":
        cert = pki.wrong_name
    sink = make_sink(tls=None if case == "not-offered" else cert)
    services = relay_services(sink, tls=TlsPolicy.VERIFY, ca_file=ca_file)
    hop = f"127.0.0.1:{sink.port}"
    expected = {
        "unknown-ca": f"TLS certificate of {hop} not accepted: unable to get local issuer",
        "system-store": f"TLS certificate of {hop} not accepted: unable to get local issuer",
        "wrong-name": f"TLS certificate of {hop} not accepted: IP address mismatch",
        "not-offered": f"TLS required but not offered by {hop}",
    }[case]

    queue_id = _send_one(services)
    for attempt in range(3):
        message = load_message(services, queue_id)
        assert message.state == MessageState.DEFERRED, attempt
        assert expected in (message.reason or ""), message.reason
        assert message.recipients[0].state == RecipientState.PENDING
        assert expected in (message.recipients[0].response or "")
        # Retried later: the same refusal, still nothing sent.
        clock.advance(services.settings.delivery.retry_max_seconds + 1)
        assert Worker(services, "w1").process_one()
    assert sink.mail_commands == 0
    assert sink.deliveries == []
    for transcript in sink.transcripts(count=4):
        assert b"MAIL" not in transcript.upper()
        assert b"Vertraulich" not in transcript
