"""A message filed into a mailbox becomes a ticket, or joins one.

In this order: a Message-ID it refers to (``In-Reply-To``, ``References``) that we received
or sent in this mailbox; then a ticket number in the subject, if the sender is that ticket's
requester; a number quoted from another address does not attach (anyone can type a number)
but opens a new ticket that links to the one named. Otherwise a new ticket, with a receipt.
Runs in the worker's transaction that files the copy, on the headers it already has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import getaddresses

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session, aliased

from crypto.at_rest import MasterKey
from gateway import audit
from mailboxes.hotline.links import surviving
from mailboxes.models import Mailbox
from mailboxes.tickets import history, receipts
from mailboxes.tickets.models import Article, ArticleKind, Ticket, TicketState
from mailboxes.tickets.numbers import numbers_in
from mailboxes.tickets.records import add_article, moved, open_ticket
from mailboxes.tickets.states import ON_MAIL_IN

MAX_REFERENCES = 50
_MSGID = re.compile(r"<([^<>\s]{1,255})>")


@dataclass(frozen=True)
class Threaded:
    ticket_id: int
    number: str
    new: bool
    linked_to: str | None = None
    receipt_queue_id: str | None = None
    receipt_refused: str | None = None


@dataclass(frozen=True)
class Filed:
    """What the worker knows of a copy it just filed."""

    mailbox_id: int
    stored_id: int
    mail_from: str
    headers: Message
    # Submitted by staff (the outbound direction) rather than received from outside.
    internal: bool = False


def message_ids(value: object) -> list[str]:
    return _MSGID.findall(str(value)) if value is not None else []


def sender_of(headers: Message, mail_from: str) -> str:
    found = [a for _, a in getaddresses([str(v) for v in headers.get_all("From") or []]) if a]
    if len(found) == 1 and "@" in found[0]:
        return found[0].lower()
    return mail_from.lower()


def thread_filed(session: Session, master: MasterKey, filed: Filed, *, postmaster: str,
                 hostname: str, actor: str, now: datetime,
                 audit_to: list[audit.Event] | None = None) -> Threaded:
    """``postmaster``: the gateway's own address besides its shared mailboxes (no receipt
    goes to any of them). With ``audit_to`` a receipt's audit entry goes there, for the
    caller to record with its own in this transaction."""
    headers = filed.headers
    sender = sender_of(headers, filed.mail_from)
    own_ids = message_ids(headers.get("Message-ID"))
    own_id = own_ids[0] if own_ids else None
    refs = (message_ids(headers.get("In-Reply-To")) + message_ids(headers.get("References"))
            )[-MAX_REFERENCES:]
    subject = str(headers.get("Subject", ""))

    ticket = _by_reference(session, filed.mailbox_id, refs)
    linked: Ticket | None = None
    if ticket is not None:
        # A merged duplicate's mail lands in the ticket it was merged into.
        ticket = surviving(session, ticket)
    else:
        named = _by_number(session, filed.mailbox_id, numbers_in(subject))
        if named is not None and named.requester == sender:
            ticket = surviving(session, named)
        else:
            linked = None if named is None else surviving(session, named)
    if ticket is not None:
        # A waiting or closed ticket opens again; the move sets its updated_at, so the
        # article need not.
        target = ON_MAIL_IN.get(TicketState(ticket.state))
        add_article(session, ticket.id, ArticleKind.INBOUND, author=sender, now=now,
                    stored_message_id=filed.stored_id, rfc_message_id=own_id,
                    touch=target is None)
        rows = [history.entry(ticket.id, actor=sender, action="mail-in", now=now,
                              stored_message_id=filed.stored_id)]
        if target is not None:
            rows.append(moved(session, ticket, target, actor=sender, now=now))
        history.record_all(session, rows)
        return Threaded(ticket.id, ticket.number, new=False)

    ticket_id, number, created = open_ticket(
        session, master, mailbox_id=filed.mailbox_id, requester=sender, subject=subject,
        actor=sender, now=now, linked_ticket_id=None if linked is None else linked.id)
    # The ticket was created at this ``now``: its updated_at needs no update.
    add_article(session, ticket_id, ArticleKind.INBOUND, author=sender, now=now,
                stored_message_id=filed.stored_id, rfc_message_id=own_id, touch=False)
    # The history rows in their order, written together at the end (one statement).
    rows = [created]
    if linked is not None:
        # Told on the ticket named, too: someone quoted its number from another address.
        rows.append(history.entry(linked.id, actor=sender, action="linked-from", now=now,
                                  ticket=number))
    refused, receipt_queue_id = _receipt(session, master, filed, ticket_id, number, own_id,
                                         postmaster=postmaster, hostname=hostname,
                                         actor=actor, now=now, history_rows=rows,
                                         audit_to=audit_to)
    history.record_all(session, rows)
    return Threaded(ticket_id, number, new=True,
                    linked_to=None if linked is None else linked.number,
                    receipt_queue_id=receipt_queue_id, receipt_refused=refused)


def _by_reference(session: Session, mailbox_id: int, refs: list[str]) -> Ticket | None:
    if not refs:
        return None
    return session.scalars(
        select(Ticket).join(Article, Article.ticket_id == Ticket.id)
        .where(Ticket.mailbox_id == mailbox_id, Article.rfc_message_id.in_(refs))
        .order_by(Article.id.desc()).limit(1)).first()


def _by_number(session: Session, mailbox_id: int, numbers: list[str]) -> Ticket | None:
    if not numbers:
        return None
    # Only this mailbox's tickets: a number of another team's ticket attaches to nothing
    # and links to nothing (it would tell the sender's team about a foreign ticket).
    return session.scalars(select(Ticket).where(
        Ticket.mailbox_id == mailbox_id, Ticket.number.in_(numbers)).limit(1)).first()


_other_box = aliased(Mailbox)
_MAILBOX = select(*receipts.SENDER_COLUMNS).where(Mailbox.id == bindparam("box"))
# What deciding on a receipt reads, in one query: the mailbox, whether the sender is one of
# the shared mailboxes, and how many receipts the mailbox sent the sender recently.
_RECEIPT_FACTS = _MAILBOX.add_columns(
    exists().where(_other_box.address == bindparam("recipient")),
    receipts.RECENT_RECEIPTS.scalar_subquery())


def _receipt(session: Session, master: MasterKey, filed: Filed, ticket_id: int, number: str,
             own_id: str | None, *, postmaster: str, hostname: str, actor: str,
             now: datetime, history_rows: list[history.HistoryRow],
             audit_to: list[audit.Event] | None) -> tuple[str | None, str | None]:
    """A receipt for the new ticket, or why none; its history row goes to ``history_rows``
    (the caller writes them)."""
    to = filed.mail_from.lower()
    by_message = None if filed.internal else receipts.message_refusal(filed.headers,
                                                                      filed.mail_from)
    from_mailbox, recent = False, 0
    if filed.internal or by_message is not None:
        # No receipt whatever the database says; only the mailbox's setting is read (it
        # decides which reason is recorded).
        row = session.execute(_MAILBOX, {"box": filed.mailbox_id}).one()
    else:
        row = session.execute(_RECEIPT_FACTS, {
            "box": filed.mailbox_id, "recipient": to, "since": receipts.window_start(now),
        }).one()
        from_mailbox, recent = bool(row[-2]), int(row[-1])
    mailbox = receipts.ReceiptSender(*row[:len(receipts.SENDER_COLUMNS)])
    refused: str | None
    if not mailbox.receipt_enabled:
        refused = "receipts are off for this mailbox"
    elif filed.internal:
        # Colleagues writing to a team's mailbox know it arrived; a receipt is noise.
        refused = "submitted by staff"
    else:
        refused = receipts.refusal(filed.headers, filed.mail_from,
                                   from_own_address=from_mailbox or to == postmaster.lower())
    if refused is None and recent >= receipts.RATE_LIMIT:
        refused = f"more than {receipts.RATE_LIMIT} receipts to this sender within the hour"
    if refused is not None:
        history_rows.append(history.entry(ticket_id, actor=actor, action="receipt-skipped",
                                          now=now, reason=refused))
        return refused, None
    receipt = receipts.queue_receipt(session, master, mailbox, to=to, number=number,
                                     in_reply_to=own_id, hostname=hostname, actor=actor,
                                     now=now, audit_to=audit_to)
    add_article(session, ticket_id, ArticleKind.RECEIPT, author=to, now=now,
                queue_id=receipt.stored.queue_id, rfc_message_id=receipt.message_id,
                touch=False)
    history_rows.append(history.entry(ticket_id, actor=actor, action="receipt-sent", now=now,
                                      queue_id=receipt.stored.queue_id))
    return None, receipt.stored.queue_id
