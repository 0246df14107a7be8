"""End to end through the real SMTP listener and the real relay to a sink: a mail to a shared
mailbox becomes a ticket and its sender gets a receipt; a reply from the sender threads into
it; a forged ticket number from another address opens a linked ticket; a reply submitted
from the ticket is processed by the real worker and reaches the sender."""

from __future__ import annotations

import smtplib
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.db import read_scope, session_scope
from gateway.services import Services
from gateway.settings import RelayRoute, Settings, TlsPolicy
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.models import Ticket
from mailboxes.tickets.queries import ticket_view
from mailboxes.tickets.replies import Reply, submit_reply
from tests.conftest import make_settings
from tests.support.pipeline import drain
from tests.support.sink import SmtpSink
from tests.support.smtp_client import client_context
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    Edge,
    edge_fixture,
    relaying_services,
    start_edge_fixture,
    tls_files_fixture,
)

BOX = "kindertagespflege@jugendamt.example"
CITIZEN = "tagesmutter@web.example"
PASSWORD = "Sehr-geheimes-Passwort-1"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    # Citizens have no keys: replies to them leave as the office allows for unknown partners.
    return make_settings(tmp_path / "var", database_url,
                         crypto={"unknown_partner_outbound": "plaintext"},
                         delivery={"routes": [RelayRoute(domain="*", host=sink.host,
                                                         port=sink.port,
                                                         tls=TlsPolicy.NONE).model_dump()]})


@pytest.fixture
def services(settings: Settings) -> Services:
    built = relaying_services(settings, mailboxes={BOX: "Kindertagespflege"},
                              users={"anna": (PASSWORD, [])})
    with session_scope(built.sessions) as s:
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="test", now=built.clock())
    return built


def send(edge: Edge, sender: str, subject: str, msgid: str, extra: str = "") -> None:
    data = (f"From: {sender}\r\nTo: {BOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}>\r\n{extra}\r\nGuten Tag, eine Frage.\r\n").encode()
    with smtplib.SMTP(*edge.inbound) as client:
        client.starttls(context=client_context(edge.cert))
        client.ehlo("mta.web.example")
        client.sendmail(sender, [BOX], data)


def parsed(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    return message


def tickets(services: Services) -> list[Ticket]:
    with read_scope(services.sessions) as s:
        found = list(s.scalars(select(Ticket).order_by(Ticket.id)))
        s.expunge_all()
        return found


def test_mailbox_ticket_receipt_threading_forgery_and_reply(
        services: Services, edge: Edge, sink: SmtpSink) -> None:
    send(edge, CITIZEN, "Frage zur Pflegeerlaubnis", "first@web.example")
    drain(services)
    (ticket,) = tickets(services)
    (receipt,) = sink.deliveries
    assert receipt.mail_from == "" and receipt.rcpt_tos == (CITIZEN,)
    got = parsed(receipt.content)
    assert got["Auto-Submitted"] == "auto-replied"
    assert ticket.number in got["Subject"] and ticket.number in got.get_content()

    # The childminder answers the receipt: same ticket.
    send(edge, CITIZEN, "Re: Eingangsbestätigung", "second@web.example",
         f"In-Reply-To: {got['Message-ID']}\r\nReferences: {got['Message-ID']}\r\n")
    drain(services)
    # Someone else quotes the number: a new ticket linking to it, with its own receipt.
    send(edge, "fremd@evil.example", f"Dringend {ticket.number}", "forged@evil.example")
    drain(services)
    first, forged = tickets(services)
    assert forged.linked_ticket_id == first.id and forged.requester == "fremd@evil.example"
    assert len(sink.deliveries) == 2  # no receipt for the follow-up, one for the new ticket

    with session_scope(services.sessions) as s:
        sent = submit_reply(s, services.master_key, Reply(first.id, "Die Erlaubnis ist da."),
                            username="anna", hostname=services.settings.smtp.hostname,
                            max_bytes=services.settings.smtp.max_message_bytes,
                            now=services.clock())
    drain(services)
    reply = sink.deliveries[-1]
    assert reply.mail_from == BOX and reply.rcpt_tos == (CITIZEN,)
    out = parsed(reply.content)
    assert out["In-Reply-To"] == "<second@web.example>"
    assert first.number in out["Subject"]
    assert "Die Erlaubnis ist da." in out.get_content()
    with read_scope(services.sessions) as s:
        view = ticket_view(s, services.master_key, first.id)
    assert [a.kind for a in view.articles] == ["inbound", "receipt", "inbound", "reply"]
    assert view.articles[-1].queue_id == sent.queue_id
    assert view.articles[-1].outcome == "sent"
    assert view.ticket.state == "waiting"
