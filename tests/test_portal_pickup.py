"""Pickup items on a real database (SQLite and PostgreSQL): made for a ticket's reply,
opened with token and code, wrong codes counted and locked, a new code, downloads
recorded, expiry with the caseworker told; every step in the audit trail."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from gateway.clock import FakeClock
from gateway.db import read_scope, session_scope
from gateway.models import AuditEntry, Message, StaffAddress
from gateway.portal.pickup import codes
from gateway.portal.pickup.items import (
    Outcome,
    PickupError,
    create_item,
    expire_due,
    new_code,
    open_with_code,
    record_download,
)
from gateway.portal.pickup.models import PickupDownload, PickupItem
from gateway.portal.pickup.sender import CodeSendError, RecordingCodeSender, send_code
from gateway.queue.spool import content_context
from gateway.queue.store import load
from gateway.services import Services
from gateway.staff.users import add_user, find_user
from mailboxes.directory import add_mailbox
from mailboxes.members import add_member
from mailboxes.models import MemberRole
from mailboxes.tickets.models import HistoryEntry
from mailboxes.tickets.records import assign, create_ticket, get_ticket

BOX = "kita@jugendamt.example"
CITIZEN = "mutter@example.org"
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
PASSWORD = "a long enough passphrase 1"


def reply_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = BOX
    msg["To"] = CITIZEN
    msg["Subject"] = "Ihr Antrag [T-2026-1]"
    msg.set_content("Guten Tag,\nanbei der Bescheid.\n")
    msg.add_attachment(b"%PDF-1.4 bescheid", maintype="application", subtype="pdf",
                       filename="Bescheid.pdf")
    msg.add_attachment(b"zweite Seite", maintype="text", subtype="plain",
                       filename="Hinweise.txt")
    return msg.as_bytes()


@pytest.fixture
def ticket_id(services: Services, clock: FakeClock) -> int:
    clock.now = START
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, BOX, "Kindertagespflege")
        add_user(s, "anna", PASSWORD)
        add_user(s, "bert", PASSWORD)
        add_member(s, BOX, "anna", MemberRole.AGENT, actor="t", now=START)
        add_member(s, BOX, "bert", MemberRole.LEAD, actor="t", now=START)
        for name in ("anna", "bert"):
            user = find_user(s, name)
            assert user is not None
            s.add(StaffAddress(user_id=user.id, address=f"{name}@jugendamt.example"))
        tid, _ = create_ticket(s, services.master_key, mailbox_id=box.id, requester=CITIZEN,
                               subject="Antrag", actor="anna", now=START)
        return tid


def make(services: Services, ticket_id: int, **kwargs: object) -> tuple[int, str, str]:
    with session_scope(services.sessions) as s:
        made = create_item(s, services.master_key, ticket_id=ticket_id, recipient=CITIZEN,
                           message=reply_message(), actor="anna", now=services.clock(),
                           **kwargs)  # type: ignore[arg-type]
    return made.item_id, made.token, made.code


def try_code(services: Services, token: str, code: str, **kwargs: object) -> Outcome:
    with session_scope(services.sessions) as s:
        result = open_with_code(s, services.master_key, token, code, now=services.clock(),
                                **kwargs)  # type: ignore[arg-type]
        return result.outcome


def actions(services: Services) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def history_actions(services: Services, ticket_id: int) -> list[str]:
    with read_scope(services.sessions) as s:
        return list(s.scalars(select(HistoryEntry.action).where(
            HistoryEntry.ticket_id == ticket_id).order_by(HistoryEntry.id)))


def test_codes_are_readable_and_hashes_bound_to_the_item(services: Services) -> None:
    code = codes.new_code()
    assert len(code) == codes.CODE_LENGTH and set(code) <= set(codes.ALPHABET)
    assert not set("0O1IL") & set(codes.ALPHABET)
    key = services.master_key
    assert codes.code_hash(key, 1, code) == codes.code_hash(key, 1, f" {code[:4].lower()}-"
                                                                  f"{code[4:]} ")
    assert codes.code_hash(key, 1, code) != codes.code_hash(key, 2, code)
    assert len(codes.new_token()) >= 40 and codes.new_token() != codes.new_token()


def test_item_is_sealed_and_opens_with_its_code(services: Services, ticket_id: int) -> None:
    item_id, token, code = make(services, ticket_id)
    with read_scope(services.sessions) as s:
        item = s.get(PickupItem, item_id)
        assert item is not None
        # Neither token, code nor content is stored in clear.
        assert token.encode() not in item.token_hash and code.encode() != item.code_hash
        assert b"Bescheid" not in item.content_sealed and item.opened_at is None
        assert item.expires_at == START + timedelta(days=14)
    with session_scope(services.sessions) as s:
        result = open_with_code(s, services.master_key, token, code.lower(), now=START)
    assert result.outcome is Outcome.OPENED and result.item_id == item_id
    assert result.message is not None
    assert result.message.subject == "Ihr Antrag [T-2026-1]"
    assert "anbei der Bescheid" in result.message.text
    assert [(a.part, a.filename, a.content_type) for a in result.message.attachments] == [
        (0, "Bescheid.pdf", "application/pdf"), (1, "Hinweise.txt", "text/plain")]
    # Opened again later: still the first opening time, one history row, two audit rows.
    services.clock.now = START + timedelta(hours=2)  # type: ignore[attr-defined]
    assert try_code(services, token, code) is Outcome.OPENED
    with read_scope(services.sessions) as s:
        item = s.get(PickupItem, item_id)
        assert item is not None and item.opened_at == START
    assert history_actions(services, ticket_id).count("pickup-opened") == 1
    assert actions(services).count("pickup-opened") == 2
    assert "pickup-created" in actions(services)


def test_unknown_token_and_wrong_code_answer_the_same(services: Services,
                                                      ticket_id: int) -> None:
    _, token, code = make(services, ticket_id)
    _, other_token, other_code = make(services, ticket_id)
    with session_scope(services.sessions) as s:
        unknown = open_with_code(s, services.master_key, "x" * 43, code, now=START)
        wrong = open_with_code(s, services.master_key, token, "AAAAAAAA", now=START)
        # Another citizen's code does not open this item.
        crossed = open_with_code(s, services.master_key, token, other_code, now=START)
    assert unknown == wrong == crossed
    assert unknown.outcome is Outcome.REFUSED and unknown.item_id is None
    assert unknown.message is None
    assert try_code(services, other_token, other_code) is Outcome.OPENED
    assert actions(services).count("pickup-code-refused") == 2  # the unknown link: none


def test_wrong_codes_lock_and_a_new_code_unlocks(services: Services, ticket_id: int) -> None:
    item_id, token, code = make(services, ticket_id)
    for _ in range(2):
        assert try_code(services, token, "WRONG234", max_tries=3) is Outcome.REFUSED
    assert try_code(services, token, "WRONG234", max_tries=3) is Outcome.LOCKED
    # Locked: even the right code does not open it now.
    assert try_code(services, token, code, max_tries=3) is Outcome.LOCKED
    assert "pickup-locked" in actions(services)
    assert "pickup-locked" in history_actions(services, ticket_id)
    with session_scope(services.sessions) as s:
        fresh = new_code(s, services.master_key, item_id, actor="anna", now=START)
    assert fresh != code
    assert try_code(services, token, code) is Outcome.REFUSED  # the old one is gone
    assert try_code(services, token, fresh) is Outcome.OPENED
    with read_scope(services.sessions) as s:
        item = s.get(PickupItem, item_id)
        assert item is not None and item.failed_tries == 0 and item.locked_at is None
    assert "pickup-code-issued" in actions(services)
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        new_code(s, services.master_key, 99999, actor="anna", now=START)


def test_a_right_code_resets_the_count(services: Services, ticket_id: int) -> None:
    _, token, code = make(services, ticket_id)
    for _ in range(2):
        assert try_code(services, token, "WRONG234", max_tries=3) is Outcome.REFUSED
    assert try_code(services, token, code, max_tries=3) is Outcome.OPENED
    for _ in range(2):
        assert try_code(services, token, "WRONG234", max_tries=3) is Outcome.REFUSED
    assert try_code(services, token, code, max_tries=3) is Outcome.OPENED


def test_downloads_are_recorded_and_audited(services: Services, ticket_id: int) -> None:
    item_id, token, code = make(services, ticket_id)
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        record_download(s, services.master_key, item_id, 0, now=START)  # not opened yet
    assert try_code(services, token, code) is Outcome.OPENED
    with session_scope(services.sessions) as s:
        got = record_download(s, services.master_key, item_id, 1, now=START)
    assert (got.filename, got.data) == ("Hinweise.txt", b"zweite Seite")
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        record_download(s, services.master_key, item_id, 2, now=START)
    with read_scope(services.sessions) as s:
        rows = list(s.execute(select(PickupDownload.item_id, PickupDownload.part,
                                     PickupDownload.at)))
    assert [tuple(r) for r in rows] == [(item_id, 1, START)]
    assert actions(services).count("pickup-downloaded") == 1
    assert "pickup-downloaded" in history_actions(services, ticket_id)


def test_expiry_tells_the_caseworker_without_content(services: Services,
                                                     ticket_id: int) -> None:
    unread_id, unread_token, unread_code = make(services, ticket_id,
                                                valid_for=timedelta(days=7))
    read_id, read_token, read_code = make(services, ticket_id, valid_for=timedelta(days=7))
    assert try_code(services, read_token, read_code) is Outcome.OPENED
    with session_scope(services.sessions) as s:
        assert expire_due(s, services.master_key, services.settings,
                          now=START + timedelta(days=6), actor="scheduler") == []
        assign(s, get_ticket(s, ticket_id), "anna", actor="bert", now=START)
    later = START + timedelta(days=7)
    services.clock.now = later  # type: ignore[attr-defined]
    # Past its time it no longer opens, even before the pass ran.
    assert try_code(services, unread_token, unread_code) is Outcome.EXPIRED
    with session_scope(services.sessions) as s:
        expired = expire_due(s, services.master_key, services.settings, now=later,
                             actor="scheduler")
        again = expire_due(s, services.master_key, services.settings, now=later,
                           actor="scheduler")
    assert expired == [unread_id, read_id] and again == []
    with read_scope(services.sessions) as s:
        items = {i.id: i for i in s.scalars(select(PickupItem))}
        assert all(i.content_sealed == b"" and i.expired_at == later for i in items.values())
        notices = list(s.scalars(select(Message).order_by(Message.id)))
        assert len(notices) == 1  # only the unread one is told, to its assignee
        raw = load(s, notices[0].id, services.master_key, content_context).content
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == "anna@jugendamt.example"
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert CITIZEN in text and "Bescheid" not in text and "abgelaufen" in text
    assert history_actions(services, ticket_id).count("pickup-expired") == 1
    assert actions(services).count("pickup-expired") == 2
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        new_code(s, services.master_key, unread_id, actor="anna", now=later)


def test_expiry_of_an_unassigned_ticket_tells_the_leads(services: Services,
                                                        ticket_id: int) -> None:
    make(services, ticket_id, valid_for=timedelta(days=1))
    with session_scope(services.sessions) as s:
        expire_due(s, services.master_key, services.settings,
                   now=START + timedelta(days=2), actor="scheduler")
    with read_scope(services.sessions) as s:
        rcpts = [r.address for m in s.scalars(select(Message)) for r in m.recipients]
    assert rcpts == ["bert@jugendamt.example"]


def test_an_item_must_be_valid_for_some_time(services: Services, ticket_id: int) -> None:
    with pytest.raises(PickupError):
        make(services, ticket_id, valid_for=timedelta(0))


def test_code_sender_sends_the_code_and_nothing_else() -> None:
    sender = RecordingCodeSender()
    send_code(sender, "+49 221 12345", "ABCD2345", office="Jugendamt Musterstadt")
    assert sender.sent == [("+49 221 12345", "Jugendamt Musterstadt: Ihr Abholcode lautet "
                            "ABCD2345. / Your pickup code is ABCD2345.")]
    with pytest.raises(CodeSendError):
        send_code(RecordingCodeSender(fail=True), "0221 12345", "ABCD2345", office="JA")


def test_the_scheduler_expires_items_once(services: Services, ticket_id: int) -> None:
    from gateway.portal.pickup import jobs as pickup_jobs
    from mailboxes.scheduler.jobs import all_jobs
    from mailboxes.scheduler.runner import Scheduler

    assert "pickup-expiry" in [job.name for job in all_jobs()]
    item_id, _, _ = make(services, ticket_id, valid_for=timedelta(hours=1))
    clock = services.clock
    workers = [Scheduler(services.settings, services.sessions, services.master_key, clock,
                         owner=f"worker:{n}", jobs=pickup_jobs.JOBS) for n in (1, 2)]
    assert [name for w in workers for name in w.tick()] == ["pickup-expiry"]
    clock.now = START + timedelta(minutes=61)  # type: ignore[attr-defined]
    assert [name for w in workers for name in w.tick()] == ["pickup-expiry"]
    with read_scope(services.sessions) as s:
        item = s.get(PickupItem, item_id)
        assert item is not None and item.expired_at == START + timedelta(minutes=61)
        assert len(list(s.scalars(select(Message)))) == 1  # the lead bert told once


def test_an_answer_lands_in_the_same_ticket_through_the_worker(services: Services,
                                                               ticket_id: int) -> None:
    from gateway.portal.pickup.replies import submit_answer
    from mailboxes.tickets.models import Article, ArticleKind, Ticket
    from tests.support.pipeline import drain

    item_id, token, code = make(services, ticket_id)
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        submit_answer(s, services.master_key, item_id, "Danke", hostname="gw.example",
                      now=START)  # not opened yet
    assert try_code(services, token, code) is Outcome.OPENED
    with session_scope(services.sessions) as s, pytest.raises(PickupError):
        submit_answer(s, services.master_key, item_id, "  ", hostname="gw.example", now=START)
    with session_scope(services.sessions) as s:
        queue_id = submit_answer(s, services.master_key, item_id,
                                 "Vielen Dank, ich komme am Montag.",
                                 hostname="gw.example", now=START)
    assert queue_id
    drain(services)
    with read_scope(services.sessions) as s:
        assert len(list(s.scalars(select(Ticket)))) == 1
        kinds = list(s.scalars(select(Article.kind).where(Article.ticket_id == ticket_id)))
    assert kinds.count(ArticleKind.INBOUND.value) == 1
    assert "mail-in" in history_actions(services, ticket_id)
    assert "pickup-answered" in actions(services)
