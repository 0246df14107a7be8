"""Two teams' shared mailboxes with tickets, and their caseworkers logged in to the web app:
what the ticket page tests, the IDOR tests and the statement counts start from."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from gateway.db import read_scope, session_scope
from gateway.services import Services
from gateway.settings import RelayRoute
from gateway.staff.users import add_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import Mailbox, MemberRole
from mailboxes.tickets.models import Article, ArticleKind, Ticket
from tests.support.pipeline import drain, enqueue

BOX = "kita@jugendamt.example"
OTHER_BOX = "adoption@jugendamt.example"
PASSWORD = "ein sehr langes passwort"
CITIZEN = "tagesmutter@web.example"


def mail(subject: str, *, to: str = BOX, sender: str = CITIZEN, msgid: str = "m1",
         body: str = "Hallo, eine Frage.", attachment: bytes | None = None) -> bytes:
    head = (f"From: Tagesmutter <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}@web.example>\r\nMIME-Version: 1.0\r\n")
    if attachment is None:
        return (head + f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b1\r\n"
            'Content-Type: application/pdf\r\nContent-Disposition: attachment; '
            'filename="Antrag.pdf"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n').encode() \
        + attachment + b"\r\n--b1--\r\n"


def deliver(services: Services, data: bytes, to: str = BOX, sender: str = CITIZEN) -> None:
    enqueue(services, [to], data, mail_from=sender)
    drain(services)


@dataclass(frozen=True)
class TicketIds:
    mailbox_id: int
    ticket_id: int
    article_id: int


def two_teams(services: Services) -> None:
    """Mailbox BOX with agent anna (and lead lena), OTHER_BOX with agent bert; root is an
    admin of no mailbox."""
    with session_scope(services.sessions) as s:
        add_mailbox(s, BOX, "Kindertagespflege")
        add_mailbox(s, OTHER_BOX, "Adoptionsvermittlung")
        for name in ("anna", "lena", "bert"):
            add_user(s, name, PASSWORD)
        add_user(s, "root", PASSWORD, admin=True)
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=services.clock())
        add_member(s, BOX, "lena", MemberRole.LEAD, actor="t", now=services.clock())
        add_member(s, OTHER_BOX, "bert", MemberRole.AGENT, actor="t", now=services.clock())
    # Receipts and replies leave through the (recording) relay.
    services.settings.delivery.routes = [RelayRoute(domain="*", host="127.0.0.1", port=1)]


def latest_ticket(services: Services, address: str) -> TicketIds:
    """The newest ticket of the mailbox at ``address`` and its first message in."""
    with read_scope(services.sessions) as s:
        box = s.scalars(select(Mailbox).where(Mailbox.address == address)).one()
        ticket = s.scalars(select(Ticket).where(Ticket.mailbox_id == box.id)
                           .order_by(Ticket.id.desc()).limit(1)).one()
        article = s.scalars(select(Article).where(
            Article.ticket_id == ticket.id, Article.kind == ArticleKind.INBOUND.value)
            .order_by(Article.id).limit(1)).one()
        return TicketIds(box.id, ticket.id, article.id)
