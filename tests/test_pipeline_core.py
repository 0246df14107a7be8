"""The queue and pipeline on a real database: intake, worker, mailbox, relay outcomes."""

from __future__ import annotations

from sqlalchemy import select

from gateway import audit
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.delivery.transport import RecordingTransport, Reply, TransportError
from gateway.models import Message, MessageState, Recipient, RecipientState
from gateway.pipeline.worker import Worker
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.models import StoredMessage
from mailboxes.store import messages_in, read_message
from tests.support.pipeline import enqueue, load_message

MSG = (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nSubject: Hallo\r\n"
       b"Message-ID: <1@partner.example>\r\n\r\nBody line\r\n")


def _enqueue(services: Services, rcpts: list[str], data: bytes = MSG,
             mail_from: str = "a@partner.example") -> str:
    return enqueue(services, rcpts, data, mail_from=mail_from)


def _state(services: Services, queue_id: str) -> Message:
    return load_message(services, queue_id)


def _mailbox(services: Services, address: str = "kita@jugendamt.example") -> int:
    with session_scope(services.sessions) as s:
        return add_mailbox(s, address, "Kita").id


def test_message_filed_into_mailbox(services: Services) -> None:
    mbox = _mailbox(services)
    qid = _enqueue(services, ["kita@jugendamt.example"])
    assert Worker(services, "w1").process_one()
    assert _state(services, qid).state == MessageState.DELIVERED
    with session_scope(services.sessions) as s:
        stored = messages_in(s, mbox)
        assert len(stored) == 1
        assert read_message(services.master_key, stored[0]).endswith(b"Body line\r\n")
        assert audit.verify(s).ok


def test_forged_result_headers_are_removed(services: Services) -> None:
    mbox = _mailbox(services)
    forged = b"X-Xgate-Verified: yes\r\n" + MSG
    _enqueue(services, ["kita@jugendamt.example"], forged)
    Worker(services, "w1").process_one()
    with session_scope(services.sessions) as s:
        content = read_message(services.master_key, messages_in(s, mbox)[0])
    assert b"X-Xgate-Verified" not in content


def test_unroutable_recipient_bounces_with_dsn(services: Services) -> None:
    qid = _enqueue(services, ["nobody@nowhere.example"])
    Worker(services, "w1").process_one()
    msg = _state(services, qid)
    assert msg.state == MessageState.REJECTED
    assert msg.recipients[0].state == RecipientState.FAILED
    with session_scope(services.sessions) as s:
        bounce = s.scalars(select(Message).where(Message.mail_from == "")).one()
        assert [r.address for r in bounce.recipients] == ["a@partner.example"]


def _relay_settings(services: Services) -> None:
    from gateway.settings import RelayRoute

    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]


def test_transient_failure_defers_then_delivers(services: Services,
                                                 transport: RecordingTransport,
                                                 clock: FakeClock) -> None:
    _relay_settings(services)
    transport.error = TransportError("connection refused")
    qid = _enqueue(services, ["x@partner.example"])
    Worker(services, "w1").process_one()
    msg = _state(services, qid)
    assert msg.state == MessageState.DEFERRED
    assert "connection refused" in (msg.reason or "")
    # Not due yet: nothing to do.
    assert not Worker(services, "w1").process_one()
    clock.advance(services.settings.delivery.retry_base_seconds + 1)
    transport.error = None
    assert Worker(services, "w1").process_one()
    assert _state(services, qid).state == MessageState.DELIVERED
    assert len(transport.sent) == 1


def test_permanent_reply_bounces_only_that_recipient(services: Services,
                                                     transport: RecordingTransport) -> None:
    _relay_settings(services)
    transport.replies["bad@partner.example"] = Reply(550, "5.1.1 user unknown")
    qid = _enqueue(services, ["good@partner.example", "bad@partner.example"])
    Worker(services, "w1").process_one()
    msg = _state(services, qid)
    assert msg.state == MessageState.DELIVERED
    states = {r.address: r.state for r in msg.recipients}
    assert states == {"good@partner.example": RecipientState.DELIVERED,
                      "bad@partner.example": RecipientState.FAILED}


def test_lifetime_expiry_bounces(services: Services, transport: RecordingTransport,
                                 clock: FakeClock) -> None:
    _relay_settings(services)
    transport.replies["x@partner.example"] = Reply(451, "4.3.0 try later")
    qid = _enqueue(services, ["x@partner.example"])
    Worker(services, "w1").process_one()
    assert _state(services, qid).state == MessageState.DEFERRED
    clock.advance(services.settings.delivery.max_lifetime_seconds + 1)
    Worker(services, "w1").process_one()
    msg = _state(services, qid)
    assert msg.state == MessageState.REJECTED
    assert "4.4.7" in (msg.recipients[0].response or "")


def test_null_sender_is_never_bounced(services: Services) -> None:
    qid = _enqueue(services, ["nobody@nowhere.example"], mail_from="")
    Worker(services, "w1").process_one()
    assert _state(services, qid).state == MessageState.REJECTED
    with session_scope(services.sessions) as s:
        assert s.scalars(select(Message)).all().__len__() == 1


def test_malformed_mime_is_quarantined_with_notice(services: Services) -> None:
    _mailbox(services)
    bad = (b"From: a@partner.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n")
    qid = _enqueue(services, ["kita@jugendamt.example"], bad)
    Worker(services, "w1").process_one()
    msg = _state(services, qid)
    assert msg.state == MessageState.QUARANTINED
    assert "NoBoundaryInMultipartDefect" in (msg.reason or "")
    with session_scope(services.sessions) as s:
        assert s.scalars(select(StoredMessage)).all() == []
        notices = s.scalars(select(Message).where(Message.mail_from == "")
                            .order_by(Message.id)).all()
        # One to the sender, one to the shared mailbox it was meant for.
        assert [n.recipients[0].address for n in notices] == [
            "a@partner.example", "kita@jugendamt.example"]
        assert s.scalars(select(Recipient)).all()


class _SlowTransport(RecordingTransport):
    """A next hop that takes longer than a whole lease to answer."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def send(self, route, mail_from, recipients, data, *, on_replies=None):  # type: ignore[no-untyped-def]
        import time

        time.sleep(self.seconds)
        return super().send(route, mail_from, recipients, data, on_replies=on_replies)


def test_lease_is_kept_alive_while_a_stage_runs_long(settings) -> None:  # type: ignore[no-untyped-def]
    """A slow relay outlasting the lease must not let a second worker take over and send
    the message again."""
    import threading

    from gateway.services import build_services
    from gateway.settings import RelayRoute

    settings.workers.lease_seconds = 1.5
    settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]
    slow = _SlowTransport(seconds=4.0)
    svc = build_services(settings, transport=slow)  # real clock: leases really expire
    qid = _enqueue(svc, ["x@partner.example"])
    first = threading.Thread(target=Worker(svc, "w1").process_one)
    first.start()
    import time

    # Only once w1 holds the message does a claim by w2 mean a takeover.
    deadline = time.monotonic() + 5
    while _state(svc, qid).lease_owner != "w1":
        assert time.monotonic() < deadline, "w1 never claimed the message"
        time.sleep(0.02)
    taken_over = False
    deadline = time.monotonic() + 6
    while first.is_alive() and time.monotonic() < deadline:
        taken_over = taken_over or Worker(svc, "w2").process_one()
        time.sleep(0.1)
    first.join()
    assert not taken_over
    assert len(slow.sent) == 1
    assert _state(svc, qid).state == MessageState.DELIVERED
