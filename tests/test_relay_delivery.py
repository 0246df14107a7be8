"""Relay outcomes through the whole pipeline with a real sink: deferral with backoff, bounces
(DSNs parsed as a mail client would), lifetime expiry, the null sender."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import Message as EmailMessage

import pytest

from gateway.clock import FakeClock
from gateway.models import MessageState, RecipientState
from gateway.pipeline.worker import Worker
from gateway.services import Services
from tests.support.pipeline import bounces, drain, enqueue, load_message, without_result_headers
from tests.support.sink import Delivery, SmtpSink

SENDER = "a@partner.example"
GOOD = "good@partner.example"
BAD = "bad@partner.example"
BODY_SECRET = b"Gutachten: streng vertraulicher Inhalt"
MSG = (b"From: a@partner.example\r\nTo: good@partner.example\r\nSubject: Gutachten\r\n"
       b"Message-ID: <orig-1@partner.example>\r\n\r\n" + BODY_SECRET + b"\r\n")

RelayServices = Callable[..., Services]


def _process(services: Services) -> None:
    assert Worker(services, "w1").process_one(), "expected a runnable message"


def _parse_dsn(delivery: Delivery) -> tuple[EmailMessage, list[EmailMessage], EmailMessage]:
    """The DSN, the per-recipient status groups, the returned headers."""
    dsn = message_from_bytes(delivery.content, policy=policy.compat32)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = _message_list(dsn.get_payload())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    # message/delivery-status parses as a list of header blocks: per-message, then one per
    # recipient (RFC 3464 2.1).
    groups = _message_list(parts[1].get_payload())
    assert len(groups) >= 2
    return dsn, groups[1:], parts[2]


def _message_list(payload: object) -> list[EmailMessage]:
    assert isinstance(payload, list)
    assert all(isinstance(p, EmailMessage) for p in payload)
    return payload


def _assert_headers_only(returned: EmailMessage) -> None:
    text = returned.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert b"Subject: Gutachten" in text
    assert b"Message-ID: <orig-1@partner.example>" in text
    assert BODY_SECRET not in text


def test_delivered_bytes_match_the_stored_message(relay_services: RelayServices,
                                                  sink: SmtpSink) -> None:
    services = relay_services(sink)
    data = MSG + b".\r\n..two dots\r\n"
    queue_id = enqueue(services, [GOOD], data)
    _process(services)
    assert load_message(services, queue_id).state == MessageState.DELIVERED
    [got] = sink.deliveries
    assert without_result_headers(got.content) == data
    assert got.wire_data.endswith(MSG + b"..\r\n...two dots\r\n.\r\n")
    assert got.mail_from == SENDER


@pytest.mark.parametrize("phase", ["rcpt", "data"])
def test_4xx_defers_with_backoff_then_delivers(relay_services: RelayServices, sink: SmtpSink,
                                               clock: FakeClock, phase: str) -> None:
    services = relay_services(sink)
    replies = sink.rcpt_replies if phase == "rcpt" else sink.data_replies
    replies[GOOD] = "451 4.3.0 try again later"
    queue_id = enqueue(services, [GOOD], MSG)
    base = services.settings.delivery.retry_base_seconds

    _process(services)
    message = load_message(services, queue_id)
    assert message.state == MessageState.DEFERRED
    assert "451 4.3.0 try again later" in (message.reason or "")
    assert message.next_attempt_at == clock() + timedelta(seconds=base)

    # Second refusal: the delay doubles.
    clock.advance(base)
    _process(services)
    message = load_message(services, queue_id)
    assert message.state == MessageState.DEFERRED
    assert message.next_attempt_at == clock() + timedelta(seconds=2 * base)

    # Not due yet: nothing is sent.
    clock.advance(2 * base - 1)
    assert not Worker(services, "w1").process_one()
    replies.clear()
    clock.advance(1)
    _process(services)
    message = load_message(services, queue_id)
    assert message.state == MessageState.DELIVERED
    assert message.recipients[0].state == RecipientState.DELIVERED
    assert len(sink.deliveries) == 1
    assert bounces(services) == []


@pytest.mark.parametrize("phase", ["rcpt", "data"])
def test_5xx_bounces_at_once_with_a_dsn_relayed_to_the_sender(
        relay_services: RelayServices, sink: SmtpSink, phase: str) -> None:
    services = relay_services(sink)
    if phase == "rcpt":
        sink.rcpt_replies[BAD] = "550 5.1.1 user unknown"
    else:
        sink.data_replies[BAD] = "554 5.6.0 content rejected"
    queue_id = enqueue(services, [BAD], MSG)
    _process(services)
    message = load_message(services, queue_id)
    assert message.state == MessageState.REJECTED
    assert message.recipients[0].state == RecipientState.FAILED

    [dsn_row] = bounces(services)
    assert [r.address for r in dsn_row.recipients] == [SENDER]
    _process(services)  # the DSN itself goes out through the relay
    assert load_message(services, dsn_row.queue_id).state == MessageState.DELIVERED
    [delivery] = sink.deliveries
    assert delivery.mail_from == ""
    assert delivery.rcpt_tos == (SENDER,)

    dsn, [group], returned = _parse_dsn(delivery)
    assert dsn["To"] == SENDER
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert group["Final-Recipient"] == f"rfc822; {BAD}"
    assert group["Action"] == "failed"
    status = "5.1.1" if phase == "rcpt" else "5.6.0"
    assert group["Status"] == status
    assert group["Remote-MTA"] == "dns; 127.0.0.1"
    assert status in group["Diagnostic-Code"]
    _assert_headers_only(returned)
    assert BODY_SECRET not in delivery.content


def test_mixed_replies_bounce_only_the_refused_recipient(relay_services: RelayServices,
                                                         sink: SmtpSink) -> None:
    services = relay_services(sink)
    sink.rcpt_replies[BAD] = "550 5.1.1 user unknown"
    queue_id = enqueue(services, [GOOD, BAD], MSG)
    _process(services)
    message = load_message(services, queue_id)
    assert message.state == MessageState.DELIVERED
    assert {r.address: r.state for r in message.recipients} == {
        GOOD: RecipientState.DELIVERED, BAD: RecipientState.FAILED}
    [original] = sink.deliveries
    assert original.rcpt_tos == (GOOD,)
    drain(services)
    dsn_delivery = sink.deliveries[1]
    _, [group], _ = _parse_dsn(dsn_delivery)
    assert group["Final-Recipient"] == f"rfc822; {BAD}"


def test_lifetime_expiry_after_repeated_4xx_bounces_with_447(
        relay_services: RelayServices, sink: SmtpSink, clock: FakeClock) -> None:
    services = relay_services(sink)
    # Daily at most instead of hourly: fewer attempts, the same default lifetime.
    services.settings.delivery.retry_max_seconds = 24 * 3600
    sink.rcpt_replies[GOOD] = "450 4.2.1 mailbox busy"
    queue_id = enqueue(services, [GOOD], MSG)
    lifetime = timedelta(seconds=services.settings.delivery.max_lifetime_seconds)
    assert lifetime == timedelta(days=5)
    received = clock()
    attempts = 0
    # Retry on the backoff schedule until the message leaves the queue.
    for attempts in range(1, 200):  # noqa: B007 - the count is checked below
        _process(services)
        message = load_message(services, queue_id)
        if message.state != MessageState.DEFERRED:
            break
        assert clock() - received < lifetime, "still deferred after its lifetime"
        clock.now = message.next_attempt_at
    assert attempts > 10, "expected repeated retries over five days"
    assert clock() - received >= lifetime
    message = load_message(services, queue_id)
    assert message.state == MessageState.REJECTED
    assert (message.recipients[0].response or "").startswith("4.4.7 ")
    assert "450 4.2.1 mailbox busy" in (message.recipients[0].response or "")

    sink.rcpt_replies.clear()
    drain(services)
    [delivery] = sink.deliveries
    assert delivery.mail_from == "" and delivery.rcpt_tos == (SENDER,)
    _, [group], returned = _parse_dsn(delivery)
    assert group["Action"] == "failed"
    assert group["Status"] == "4.4.7"
    assert "delivery time expired" in group["Diagnostic-Code"]
    _assert_headers_only(returned)


def test_null_sender_is_relayed_with_empty_path_and_never_bounced(
        relay_services: RelayServices, sink: SmtpSink) -> None:
    services = relay_services(sink)
    ok = enqueue(services, [GOOD], MSG, mail_from="")
    _process(services)
    assert load_message(services, ok).state == MessageState.DELIVERED
    assert sink.deliveries[0].mail_from == ""

    sink.rcpt_replies[BAD] = "550 5.1.1 user unknown"
    refused = enqueue(services, [BAD], MSG, mail_from="")
    _process(services)
    assert load_message(services, refused).state == MessageState.REJECTED
    # Only the two messages enqueued here exist: no DSN was generated for either.
    assert {m.queue_id for m in bounces(services)} == {ok, refused}
    assert not Worker(services, "w1").process_one()
    assert len(sink.deliveries) == 1
