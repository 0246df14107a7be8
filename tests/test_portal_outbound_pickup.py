"""The delivery step of pickup (gateway.delivery.portal_pickup) on a real database (SQLite and
PostgreSQL), the real worker and the real SMTP relay to a sink: a ticket reply to a citizen
without key becomes a sealed pickup item and a notice without content; the recipient is
"delivered to portal"; a crash in the middle makes nothing twice and loses nothing; the code
goes by SMS where a sender is wired in and the citizen's number is known."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from gateway.audit.view import opened
from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.delivery import portal_pickup
from gateway.delivery.smtp_relay import SmtpRelayTransport
from gateway.models import AuditEntry, Direction, Message, Recipient, RecipientState
from gateway.portal.pickup.items import Outcome, new_code, open_with_code, record_download
from gateway.portal.pickup.models import PickupItem
from gateway.portal.pickup.sender import RecordingCodeSender
from gateway.portal.pickup.views import items_of_ticket
from gateway.services import Services, build_services
from gateway.settings import RelayRoute, TlsPolicy
from gateway.staff.users import add_user
from gateway.transfers.timeline import timeline
from mailboxes.directory import add_mailbox
from mailboxes.hotline.calls import CallForm, log_call
from mailboxes.members import add_member
from mailboxes.models import Mailbox, MemberRole
from mailboxes.tickets.records import create_ticket
from mailboxes.tickets.replies import Attachment, Reply, submit_reply
from tests.conftest import make_settings
from tests.support.pipeline import drain
from tests.support.sink import SmtpSink

BOX = "kita@jugendamt.example"
CITIZEN = "mutter@web.example"
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
PUBLIC = "https://portal.kreis.example"
TEXT = "Ihr Antrag auf Kindertagespflege ist bewilligt, Frau Beispiel."
FILE = "Bewilligungsbescheid-Beispiel.pdf"
SUBJECT = "Antrag Kindertagespflege Beispiel"


@pytest.fixture
def pickup_services(tmp_path: Path, database_url: str, sink: SmtpSink,
                    clock: FakeClock) -> Iterator[Services]:
    clock.now = START
    settings = make_settings(
        tmp_path / "var", database_url,
        crypto={"unknown_partner_outbound": "either-or-portal"},
        portal={"enabled": True, "public_url": PUBLIC, "pickup_valid_days": 10},
        delivery={"routes": [RelayRoute(domain="*", host=sink.host, port=sink.port,
                                        tls=TlsPolicy.NONE).model_dump()]})
    built = build_services(settings, transport=SmtpRelayTransport(settings), clock=clock)
    with session_scope(built.sessions) as s:
        add_mailbox(s, BOX, "Kindertagespflege")
        add_user(s, "anna", "a long enough passphrase 1")
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=START)
    yield built
    built.sessions.kw["bind"].dispose()


def _ticket(services: Services, *, number: str | None = None) -> int:
    with session_scope(services.sessions) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.address == BOX))
        assert box is not None
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=CITIZEN,
                               subject=SUBJECT, actor="anna", now=START)
        if number is not None:
            log_call(s, services.master_key, box, CallForm(
                caller="Frau Beispiel", role="parent", number=number), actor="anna",
                now=START, attach_to=tid)
        return tid


def _reply(services: Services, ticket_id: int) -> str:
    with session_scope(services.sessions) as s:
        sent = submit_reply(s, services.master_key, Reply(
            ticket_id=ticket_id, text=TEXT,
            attachments=[Attachment(FILE, "application/pdf", b"%PDF-1.4 geheim")]),
            username="anna", hostname="gw.example", max_bytes=10**6, now=START)
    return sent.queue_id


def _items(services: Services) -> list[PickupItem]:
    with read_scope(services.sessions) as s:
        items = list(s.scalars(select(PickupItem).order_by(PickupItem.id)))
        s.expunge_all()  # readable after the scope ends
        return items


def _recipient(services: Services, queue_id: str) -> Recipient:
    with read_scope(services.sessions) as s:
        row = s.scalar(select(Recipient).join(Message, Message.id == Recipient.message_id)
                       .where(Message.queue_id == queue_id))
        assert row is not None
        s.expunge_all()
        return row


def _actions(services: Services) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def _text(notice: bytes) -> str:
    msg = email.message_from_bytes(notice, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return f"{msg['Subject']}\n{body.get_content()}"


def _link(notice: bytes) -> str:
    """The link, the same in the German and the English half."""
    [link] = {w for w in _text(notice).split() if w.startswith(PUBLIC)}
    return link


def test_a_reply_to_a_citizen_without_key_goes_to_pickup(pickup_services: Services,
                                                         sink: SmtpSink) -> None:
    services = pickup_services
    tid = _ticket(services)
    queue_id = _reply(services, tid)
    drain(services)

    [item] = _items(services)
    assert (item.ticket_id, item.queue_id, item.recipient) == (tid, queue_id, CITIZEN)
    assert item.expires_at == START + timedelta(days=10)
    assert item.code_hash is None  # no SMS sender: the caseworker gives the code
    # In a scope: an unclosed session could keep SQLite's lock until it is collected.
    with read_scope(services.sessions) as s:
        [view] = items_of_ticket(s, tid, now=START)
    assert view.needs_code and not view.locked

    # The one mail that left: the notice, from the null sender, without any content.
    [delivery] = sink.deliveries
    assert delivery.rcpt_tos == (CITIZEN,) and delivery.mail_from == ""
    notice = delivery.content
    text = _text(notice)
    for secret in (TEXT, "bewilligt", FILE, "Bewilligungsbescheid", SUBJECT, "geheim",
                   "Kindertagespflege", "%PDF"):
        assert secret.encode() not in notice and secret not in text, secret
    assert b"Content-Disposition: attachment" not in notice
    link = _link(notice)
    assert link.startswith(f"{PUBLIC}/p/")
    assert text.index("Bürgerportal") < text.index("citizen portal")  # German first
    assert "20.03.2026" in text and "auf anderem Weg" in text and "another way" in text

    # The reply's recipient: delivered to the portal, never sent in plain.
    row = _recipient(services, queue_id)
    assert row.state == RecipientState.DELIVERED.value
    assert row.response == f"delivered to portal (pickup item {item.id})"
    actions = _actions(services)
    assert "delivered-to-portal" in actions and "pickup-created" in actions
    with read_scope(services.sessions) as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.queue_id == queue_id)))
        shown = opened(s, entries)
    # The message's outcome says where it went; nothing of it was relayed.
    [outcome] = [e for e in shown if e.action == "delivered"]
    assert "relay" not in outcome.details
    assert outcome.details[f"plan:{CITIZEN}"] == "portal"
    assert outcome.details[f"pickup:{CITIZEN}"] == str(item.id)
    assert f"encryption:{CITIZEN}" not in outcome.details
    [portal] = [e for e in shown if e.action == "delivered-to-portal"]
    assert portal.details["item"] == item.id and portal.details["ticket_id"] == tid
    with read_scope(services.sessions) as s:
        facts = s.scalar(select(Message.facts).where(Message.queue_id == queue_id))
    assert f'"pickup:{CITIZEN}": "{item.id}"' in str(facts)

    # The caseworker issues the code; link and code open the reply with its attachment.
    with session_scope(services.sessions) as s:
        code = new_code(s, services.master_key, item.id, actor="anna", now=START)
    token = link.rsplit("/", 1)[1]
    with session_scope(services.sessions) as s:
        result = open_with_code(s, services.master_key, token, code, now=START)
    assert result.outcome is Outcome.OPENED and result.message is not None
    assert TEXT in result.message.text
    assert [a.filename for a in result.message.attachments] == [FILE]
    assert result.message.attachments[0].data == b"%PDF-1.4 geheim"

    # The transfer's timeline in the console shows the pickup: put up, opened, downloaded.
    with session_scope(services.sessions) as s:
        record_download(s, services.master_key, item.id, 0, now=START)
    with read_scope(services.sessions) as s:
        journey = timeline(s, queue_id)
    assert journey is not None
    actions = [step.action for step in journey.steps]
    assert {"delivered-to-portal", "pickup-created", "pickup-code-issued", "pickup-opened",
            "pickup-downloaded"} <= set(actions)


def test_repeating_the_step_makes_no_second_item_nor_notice(pickup_services: Services
                                                            ) -> None:
    services = pickup_services
    queue_id = _reply(services, _ticket(services))
    drain(services)
    with read_scope(services.sessions) as s:
        message_id = s.scalar(select(Message.id).where(Message.queue_id == queue_id))
        assert message_id is not None
        messages = len(list(s.scalars(select(Message.id))))
    with session_scope(services.sessions) as s:
        again = portal_pickup.put_up_for_pickup(
            s, services.master_key, services.settings, message_id=message_id,
            queue_id=queue_id, sender=BOX, recipient=CITIZEN, content=b"ignored",
            sms_possible=False, actor="w", now=START)
    assert again.notice_queue_id is None and again.item_id == _items(services)[0].id
    assert len(_items(services)) == 1
    with read_scope(services.sessions) as s:
        assert len(list(s.scalars(select(Message.id)))) == messages


def test_a_crash_before_the_notice_is_queued_loses_nothing_and_makes_nothing_twice(
        pickup_services: Services, sink: SmtpSink, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = pickup_services
    queue_id = _reply(services, _ticket(services))

    def crash(*args: object, **kwargs: object) -> object:
        raise OperationalError("INSERT INTO messages", {}, Exception("disk I/O error"))

    monkeypatch.setattr(portal_pickup, "store_received", crash)
    drain(services)
    assert _items(services) == []  # the item made before the crash was rolled back
    assert _recipient(services, queue_id).state == RecipientState.PENDING.value
    assert sink.deliveries == []

    monkeypatch.undo()
    clock.now = START + timedelta(hours=1)
    drain(services)
    assert len(_items(services)) == 1
    assert [d.rcpt_tos for d in sink.deliveries] == [(CITIZEN,)]
    assert _recipient(services, queue_id).state == RecipientState.DELIVERED.value


def test_the_code_goes_by_sms_when_the_number_is_known(pickup_services: Services,
                                                       sink: SmtpSink) -> None:
    services = pickup_services
    sender = RecordingCodeSender()
    services.code_sender = sender
    tid = _ticket(services, number="0171 2345678")
    _reply(services, tid)
    drain(services)
    [(number, text)] = sender.sent
    assert number.replace(" ", "").endswith("1712345678")
    code = text.split("lautet ", 1)[1].split(".", 1)[0]
    assert TEXT not in text and PUBLIC not in text
    [delivery] = sink.deliveries
    assert b"SMS" in delivery.content
    token = _link(delivery.content).rsplit("/", 1)[1]
    with session_scope(services.sessions) as s:
        result = open_with_code(s, services.master_key, token, code, now=START)
    assert result.outcome is Outcome.OPENED
    assert "pickup-code-sent" in _actions(services)


def test_a_failed_sms_leaves_the_code_to_the_caseworker(pickup_services: Services) -> None:
    services = pickup_services
    services.code_sender = RecordingCodeSender(fail=True)
    tid = _ticket(services, number="0171 2345678")
    _reply(services, tid)
    drain(services)
    [item] = _items(services)
    assert item.code_hash is None
    # In a scope: an unclosed session could keep SQLite's lock until it is collected.
    with read_scope(services.sessions) as s:
        [view] = items_of_ticket(s, tid, now=START)
    assert view.needs_code


def test_mail_that_is_no_ticket_reply_gets_an_item_without_ticket(
        pickup_services: Services, sink: SmtpSink) -> None:
    from tests.support.pipeline import enqueue

    services = pickup_services
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "anna@jugendamt.example", CITIZEN, SUBJECT
    msg.set_content(TEXT)
    queue_id = enqueue(services, [CITIZEN], msg.as_bytes(),
                       mail_from="anna@jugendamt.example", direction=Direction.OUTBOUND)
    drain(services)
    [item] = _items(services)
    assert (item.ticket_id, item.queue_id, item.sender) == (
        None, queue_id, "anna@jugendamt.example")
    [delivery] = sink.deliveries
    assert TEXT.encode() not in delivery.content


def test_an_item_without_ticket_is_answered_and_expires_to_its_sender(
        pickup_services: Services, sink: SmtpSink, clock: FakeClock) -> None:
    from gateway.portal.pickup.items import expire_due
    from gateway.portal.pickup.replies import submit_answer
    from tests.support.pipeline import enqueue

    services = pickup_services
    staff = "anna@jugendamt.example"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = staff, CITIZEN, SUBJECT
    msg.set_content(TEXT)
    enqueue(services, [CITIZEN, "vater@web.example"], msg.as_bytes(), mail_from=staff,
            direction=Direction.OUTBOUND)
    drain(services)
    answered, unread = _items(services)
    assert answered.ticket_id is None and answered.recipient == CITIZEN
    [notice] = [d for d in sink.deliveries if d.rcpt_tos == (CITIZEN,)]
    token = _link(notice.content).rsplit("/", 1)[1]
    with session_scope(services.sessions) as s:
        code = new_code(s, services.master_key, answered.id, actor="anna", now=START)
    with session_scope(services.sessions) as s:
        assert open_with_code(s, services.master_key, token, code, now=START
                              ).outcome is Outcome.OPENED
    with session_scope(services.sessions) as s:
        queue_id = submit_answer(s, services.master_key, answered.id, "Danke!",
                                 hostname="gw.example", now=START)
    with read_scope(services.sessions) as s:
        rcpts = list(s.scalars(select(Recipient.address).join(
            Message, Message.id == Recipient.message_id).where(Message.queue_id == queue_id)))
    assert rcpts == [staff]

    clock.now = START + timedelta(days=11)
    with session_scope(services.sessions) as s:
        expired = expire_due(s, services.master_key, services.settings, now=clock(),
                             actor="scheduler")
    assert expired == [answered.id, unread.id]
    with read_scope(services.sessions) as s:
        told = [m for m in s.scalars(select(Message).where(Message.mail_from == ""))
                if [r.address for r in m.recipients] == [staff]]
    assert len(told) == 1  # only the unread one is told, to the sender
