"""The gateway's own notices and DSNs: German first and English below, true in what they
say, and never lost: one that reaches nobody stays in the queue as ``failed``.

Relayed over the real SMTP relay to a real sink on loopback and read as a mail client would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

import pytest
from sqlalchemy import select

from crypto.at_rest import open_sealed
from gateway.clock import FakeClock
from gateway.db import session_scope
from gateway.delivery.notices import ENGLISH_SEPARATOR
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.models import Direction, MessageState, RecipientState, SealedContent
from gateway.queue.spool import content_context
from gateway.services import Services, build_services
from gateway.settings import OutboundPolicy, RelayRoute, Settings, TlsPolicy
from mailboxes.directory import add_mailbox
from tests.support.clamd import EICAR
from tests.support.cli import Cli
from tests.support.pipeline import bounces, drain, enqueue, load_message
from tests.support.sink import SmtpSink

MakeSink = Callable[..., SmtpSink]

STAFF = "sb@jugendamt.example"
PARTNER = "fachdienst@partner.example"
MAILBOX = "kita@jugendamt.example"
REPORT = (f"From: {STAFF}\r\nTo: {PARTNER}\r\nSubject: Hilfeplan\r\n\r\n"
          "Vertraulicher Inhalt\r\n").encode()


def _route(domain: str, sink: SmtpSink) -> RelayRoute:
    return RelayRoute(domain=domain, host=sink.host, port=sink.port, tls=TlsPolicy.NONE,
                      internal=domain != "*" and domain.endswith("jugendamt.example"))


@pytest.fixture
def office(settings: Settings, clock: FakeClock) -> Iterator[Services]:
    """The default an installation starts with: the partners' domain is routed, the office's
    own domain is not; outbound mail needs a key (held without one)."""
    settings.crypto.unknown_partner_outbound = OutboundPolicy.EITHER
    svc = build_services(settings, transport=SmtpRelayTransport(settings), clock=clock)
    yield svc
    svc.sessions.kw["bind"].dispose()


def _text(message: Message) -> str:
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


def _halves(text: str) -> tuple[str, str]:
    german, separator, english = text.partition(ENGLISH_SEPARATOR)
    assert separator, text
    return german, english


def _parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _stored_notice(services: Services, to: str) -> EmailMessage:
    [notice] = [m for m in bounces(services) if [r.address for r in m.recipients] == [to]]
    with session_scope(services.sessions) as s:
        sealed = s.scalars(select(SealedContent.sealed).where(
            SealedContent.message_id == notice.id)).one()
    return _parsed(open_sealed(services.master_key, sealed, content_context(notice.queue_id)))


def test_a_notice_nobody_can_receive_stays_failed_and_goes_out_on_retry(
        office: Services, make_sink: MakeSink, cli: Cli, clock: FakeClock) -> None:
    partners, internal = make_sink(), make_sink()
    office.settings.delivery.routes = [_route("partner.example", partners)]
    qid = enqueue(office, [PARTNER], REPORT, mail_from=STAFF, direction=Direction.OUTBOUND)
    drain(office)
    assert load_message(office, qid).state == MessageState.HELD  # no key for the partner
    [notice] = bounces(office)
    failed = load_message(office, notice.queue_id)
    assert failed.state == MessageState.FAILED
    assert failed.reason is not None
    assert f"{STAFF}: 5.1.2 no route to this destination" in failed.reason
    assert partners.deliveries == [] and internal.deliveries == []

    _, listed, _ = cli("queue", "list", "--state", "failed")
    assert notice.queue_id in listed and STAFF in listed

    # The operator routes staff mail to the internal server and retries: it goes out.
    office.settings.delivery.routes.append(_route("jugendamt.example", internal))
    cli("queue", "retry", notice.queue_id)
    clock.advance(60)  # the command ran on the real clock
    drain(office)
    assert load_message(office, notice.queue_id).state == MessageState.DELIVERED
    [delivery] = internal.deliveries
    assert delivery.mail_from == "" and delivery.rcpt_tos == (STAFF,)
    held = _parsed(delivery.content)
    assert held["Subject"] == (f"Nachricht zurückgehalten: Referenz {qid} / "
                               f"Message held: reference {qid}")
    german, english = _halves(_text(held))
    assert german.startswith(f"Ihre Nachricht an {PARTNER} (Referenz {qid}) wurde vom "
                             "Mail-Gateway zurückgehalten")
    assert f"für {PARTNER} ein freigegebenes, gültiges S/MIME-Zertifikat oder" in german
    assert "sobald ein passender Schlüssel freigegeben ist" in german
    assert f"Your message to {PARTNER} (reference {qid}) has been held" in english
    assert f"an approved, valid S/MIME certificate or OpenPGP key for {PARTNER}" in english
    # Nobody else was told, so no notice says so.
    assert "administrators have been informed" not in english
    assert "Administratoren" not in german


def test_retry_of_a_failed_notice_leaves_other_senders_bounces_alone(
        office: Services, make_sink: MakeSink, cli: Cli) -> None:
    partners = make_sink()
    for address in (PARTNER, "a@partner.example"):
        partners.rcpt_replies[address] = "550 5.1.1 user unknown"
    office.settings.delivery.routes = [_route("partner.example", partners)]
    qid = enqueue(office, [PARTNER], b"Subject: x\r\n\r\nx\r\n", mail_from="a@partner.example")
    drain(office)
    assert load_message(office, qid).state == MessageState.REJECTED
    [dsn] = bounces(office)
    # The DSN went to the partner's sender and was refused there too: nobody left to tell.
    assert load_message(office, dsn.queue_id).state == MessageState.FAILED
    code, _, err = cli("queue", "retry", qid, ok=False)
    assert code == 1 and "rejected and bounced" in err
    cli("queue", "retry", dsn.queue_id)
    assert load_message(office, dsn.queue_id).recipients[0].state == RecipientState.PENDING


def test_dsn_is_german_then_english_and_its_report_part_is_unchanged(
        office: Services, make_sink: MakeSink) -> None:
    sink = make_sink()
    sink.rcpt_replies["bad@partner.example"] = "550 5.1.1 user unknown"
    office.settings.delivery.routes = [_route("*", sink)]
    qid = enqueue(office, ["bad@partner.example"], b"Subject: Gutachten\r\n\r\ngeheim\r\n")
    drain(office)
    [delivery] = sink.deliveries
    dsn = message_from_bytes(delivery.content, policy=policy.compat32)
    assert dsn["Subject"] == "Unzustellbare Nachricht / Undelivered Mail Returned to Sender"
    human, report, headers = _parts(dsn)
    german, english = _halves(_text(human))
    assert "Ihre Nachricht konnte an die folgenden Empfänger nicht zugestellt werden" in german
    assert f"Referenz: {qid}" in german
    assert "Your message could not be delivered to the following recipients" in english
    for half in (german, english):
        assert "bad@partner.example: 550 5.1.1 user unknown" in half
    # RFC 3464's machine-readable part: exactly the fields it had before.
    assert report.get_content_type() == "message/delivery-status"
    assert report["Content-Transfer-Encoding"] is None
    groups = _parts(report)
    assert [list(g.keys()) for g in groups] == [
        ["Reporting-MTA", "X-Xgate-Queue-ID", "Arrival-Date"],
        ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code"]]
    assert groups[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 user unknown"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"geheim" not in delivery.content


def _parts(message: Message) -> list[Message]:
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert all(isinstance(p, Message) for p in parts)
    return [p for p in parts if isinstance(p, Message)]


def test_quarantine_notices_say_who_was_told(office: Services, make_sink: MakeSink
                                            ) -> None:
    with session_scope(office.sessions) as s:
        add_mailbox(s, MAILBOX, "Kita")
    office.settings.delivery.routes = [_route("*", make_sink())]
    raw = (b"From: a@partner.example\r\nSubject: Unterlagen\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/octet-stream\r\n\r\n" + EICAR + b"\r\n")
    qid = enqueue(office, [MAILBOX], raw)
    drain(office)
    assert load_message(office, qid).state == MessageState.QUARANTINED

    to_sender = _stored_notice(office, "a@partner.example")
    assert to_sender["Subject"] == (f"Nachricht in Quarantäne: Referenz {qid} / "
                                    f"Message quarantined: reference {qid}")
    german, english = _halves(_text(to_sender))
    assert "Die Empfänger wurden benachrichtigt." in german
    assert "The recipients have been told." in english
    assert "administrators have been informed" not in english

    to_mailbox = _stored_notice(office, MAILBOX)
    german, english = _halves(_text(to_mailbox))
    assert german.startswith(f"Eine Nachricht von a@partner.example an {MAILBOX} "
                             f"(Referenz {qid}) wurde vom Mail-Gateway in Quarantäne")
    assert "zwei verschiedene müssen zustimmen" in german
    assert "Der Absender wurde benachrichtigt." in german
    assert "The sender has been told." in english
