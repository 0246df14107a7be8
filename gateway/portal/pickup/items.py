"""Pickup items: made for a reply, opened with link token and code, downloaded from,
given a new code by the caseworker, expired when unread too long.

Every function writes in the caller's transaction (the request, the worker unit, the CLI
command commits). A refused code is an answer, not an exception, so the edge commits the
counted try with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway import audit
from gateway.audit import AuditAction
from gateway.delivery.dsn import build_notice
from gateway.delivery.notices import Bilingual
from gateway.errors import GatewayError
from gateway.models import Direction
from gateway.portal.pickup import codes
from gateway.portal.pickup.content import Attachment, PickupMessage, parse
from gateway.portal.pickup.models import PickupDownload, PickupItem
from gateway.queue.spool import Envelope, store_received
from gateway.settings import Settings
from mailboxes.hotline.digest import own_address
from mailboxes.models import MailboxMember, MemberRole
from mailboxes.tickets import history
from mailboxes.tickets.models import Ticket

PORTAL_ACTOR = "portal"
DEFAULT_VALID_FOR = timedelta(days=14)
DEFAULT_MAX_TRIES = 5
# Hashed against when the token is unknown, so that answer costs what a wrong code costs.
_NO_ITEM_HASH = bytes(32)


class PickupError(GatewayError):
    """A caseworker's pickup operation was refused; the message says why."""


class Outcome(StrEnum):
    OPENED = "opened"
    REFUSED = "refused"  # an unknown link or a wrong code: the same answer for both
    LOCKED = "locked"  # too many wrong codes, or no code issued yet: ask the office
    EXPIRED = "expired"


@dataclass(frozen=True)
class CreatedItem:
    item_id: int
    token: str  # for the link in the notice mail; shown once, stored only hashed
    code: str  # for the second channel; shown once, stored only hashed


@dataclass(frozen=True)
class OpenResult:
    outcome: Outcome
    item_id: int | None = None
    message: PickupMessage | None = None


def content_context(item_id: int) -> bytes:
    return f"pickup-item:{item_id}".encode()


def _history(session: Session, of: PickupItem, *, actor: str, action: str, now: datetime,
             **detail: object) -> None:
    """A line in the ticket's history; an item for mail that is no ticket reply has none."""
    if of.ticket_id is not None:
        history.record(session, of.ticket_id, actor=actor, action=action, now=now, **detail)


def create_item(session: Session, master: MasterKey, *, ticket_id: int | None, recipient: str,
                message: bytes, actor: str, now: datetime,
                valid_for: timedelta = DEFAULT_VALID_FOR, queue_id: str | None = None,
                sender: str | None = None, with_code: bool = True) -> CreatedItem:
    """Keep ``message`` (a MIME message) sealed for ``recipient``; the link token and code.

    ``queue_id`` and ``sender`` name the outbound message it was made for; without
    ``with_code`` no code is issued yet (the caseworker issues one from the ticket) and the
    returned code is empty."""
    if valid_for <= timedelta(0):
        raise PickupError("a pickup item must be valid for some time")
    token, code = codes.new_token(), codes.new_code() if with_code else ""
    item = PickupItem(ticket_id=ticket_id, recipient=recipient.lower()[:320],
                      queue_id=queue_id, sender=sender[:320] if sender else None,
                      token_hash=codes.token_hash(token), code_hash=None,
                      code_issued_at=now if with_code else None,
                      failed_tries=0, content_sealed=b"", created_by=actor[:320],
                      created_at=now, expires_at=now + valid_for)
    session.add(item)
    session.flush()
    item.content_sealed = seal(master, message, content_context(item.id))
    if with_code:
        item.code_hash = codes.code_hash(master, item.id, code)
    _history(session, item, actor=actor, action="pickup-created", now=now,
             item=item.id, expires=item.expires_at.isoformat())
    audit.record(session, actor=actor, action=AuditAction.PICKUP_CREATED,
                 queue_id=item.queue_id, detail={
        "item": item.id, "ticket_id": ticket_id, "expires": item.expires_at.isoformat()})
    session.flush()
    return CreatedItem(item.id, token, code)


def _expired(item: PickupItem, now: datetime) -> bool:
    return item.expired_at is not None or now >= item.expires_at


def open_with_code(session: Session, master: MasterKey, token: str, code: str, *,
                   now: datetime, max_tries: int = DEFAULT_MAX_TRIES) -> OpenResult:
    """The message when the code fits the item the token names. An unknown token and a wrong
    code get the same answer (REFUSED) after the same work; a wrong code counts, and the
    ``max_tries``-th wrong one locks the item until the caseworker issues a new code."""
    item = session.scalar(select(PickupItem).where(
        PickupItem.token_hash == codes.token_hash(token)))
    if item is None:
        codes.same(codes.code_hash(master, 0, code), _NO_ITEM_HASH)
        return OpenResult(Outcome.REFUSED)
    if _expired(item, now):
        return OpenResult(Outcome.EXPIRED, item.id)
    if item.locked_at is not None or item.code_hash is None:
        return OpenResult(Outcome.LOCKED, item.id)
    if not codes.same(codes.code_hash(master, item.id, code), item.code_hash):
        return _wrong_code(session, item, now=now, max_tries=max_tries)
    first = item.opened_at is None
    item.failed_tries = 0
    if first:
        item.opened_at = now
        _history(session, item, actor=PORTAL_ACTOR, action="pickup-opened", now=now,
                 item=item.id)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_OPENED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id, "first": first})
    session.flush()
    return OpenResult(Outcome.OPENED, item.id, read_message(master, item))


def _wrong_code(session: Session, item: PickupItem, *, now: datetime,
                max_tries: int) -> OpenResult:
    # Counted in SQL, so two wrong tries at once both count.
    session.execute(update(PickupItem).where(PickupItem.id == item.id)
                    .values(failed_tries=PickupItem.failed_tries + 1)
                    .execution_options(synchronize_session=False))
    session.refresh(item)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_CODE_REFUSED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "tries": item.failed_tries})
    if item.failed_tries < max_tries:
        return OpenResult(Outcome.REFUSED)
    item.locked_at = now
    item.code_hash = None
    _history(session, item, actor=PORTAL_ACTOR, action="pickup-locked", now=now,
             item=item.id, tries=item.failed_tries)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_LOCKED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id})
    session.flush()
    return OpenResult(Outcome.LOCKED, item.id)


def read_message(master: MasterKey, item: PickupItem) -> PickupMessage:
    return parse(open_sealed(master, item.content_sealed, content_context(item.id)))


def openable(session: Session, item_id: int, *, now: datetime) -> PickupItem:
    """The item, for a citizen who opened it with its code before (the portal's pickup
    session says so); a PickupError when it has expired or locked since."""
    item = session.get(PickupItem, item_id)
    if item is None or _expired(item, now) or item.locked_at is not None:
        raise PickupError(f"pickup item {item_id} can no longer be opened")
    return item


def read_opened(session: Session, master: MasterKey, item_id: int, *,
                now: datetime) -> PickupMessage:
    """The message again for a citizen whose pickup session says she gave the code (the
    portal's message page after a download); each read audited like the first."""
    item = openable(session, item_id, now=now)
    if item.opened_at is None:
        raise PickupError(f"pickup item {item_id} has not been opened with its code")
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_OPENED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id, "first": False})
    return read_message(master, item)


def record_download(session: Session, master: MasterKey, item_id: int, part: int, *,
                    now: datetime) -> Attachment:
    """The attachment at ``part`` of an opened item, its download recorded and audited."""
    item = openable(session, item_id, now=now)
    if item.opened_at is None:
        raise PickupError(f"pickup item {item_id} has not been opened with its code")
    attachments = read_message(master, item).attachments
    if not 0 <= part < len(attachments):
        raise PickupError(f"pickup item {item_id} has no attachment {part}")
    session.add(PickupDownload(item_id=item.id, part=part, at=now))
    _history(session, item, actor=PORTAL_ACTOR, action="pickup-downloaded", now=now,
             item=item.id, part=part)
    audit.record(session, actor=PORTAL_ACTOR, action=AuditAction.PICKUP_DOWNLOADED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id, "part": part,
                         "size": len(attachments[part].data)})
    session.flush()
    return attachments[part]


def new_code(session: Session, master: MasterKey, item_id: int, *, actor: str,
             now: datetime) -> str:
    """A new code for the item (the old one stops working, a lock is lifted); shown once."""
    item = session.get(PickupItem, item_id)
    if item is None:
        raise PickupError(f"no pickup item {item_id}")
    if _expired(item, now):
        raise PickupError(f"pickup item {item_id} has expired: send the reply again")
    code = codes.new_code()
    item.code_hash = codes.code_hash(master, item.id, code)
    item.code_issued_at, item.failed_tries, item.locked_at = now, 0, None
    _history(session, item, actor=actor, action="pickup-code-issued", now=now, item=item.id)
    audit.record(session, actor=actor, action=AuditAction.PICKUP_CODE_ISSUED,
                 queue_id=item.queue_id,
                 detail={"item": item.id, "ticket_id": item.ticket_id})
    session.flush()
    return code


def expiry_notice_text(ticket_number: str, recipient: str) -> tuple[str, str]:
    """Subject and text: ticket number and recipient only, no content."""
    de = (f"Die Antwort im Vorgang {ticket_number} an {recipient} wurde im Bürgerportal "
          "nicht abgeholt und ist abgelaufen. Bitte nehmen Sie auf anderem Weg Kontakt auf "
          "oder senden Sie die Antwort erneut.")
    en = (f"The reply in ticket {ticket_number} to {recipient} was not picked up from the "
          "citizen portal and has expired. Please get in touch another way or send the "
          "reply again.")
    return (f"Nicht abgeholt / not picked up: {ticket_number}", Bilingual(de, en).render())


def _told(session: Session, ticket: Ticket) -> list[str]:
    """The ticket's caseworker; for an unassigned ticket, the mailbox's leads."""
    if ticket.assignee_id is not None:
        users = [ticket.assignee_id]
    else:
        users = list(session.scalars(select(MailboxMember.user_id).where(
            MailboxMember.mailbox_id == ticket.mailbox_id,
            MailboxMember.role == MemberRole.LEAD.value).order_by(MailboxMember.user_id)))
    return [a for a in (own_address(session, u) for u in users) if a is not None]


def expire_due(session: Session, master: MasterKey, settings: Settings, *, now: datetime,
               actor: str) -> list[int]:
    """Expire every item past its time; its sealed copy is emptied (the ticket keeps the
    reply). For one never opened, the ticket's history says so and its caseworker is told
    by mail. The ids expired."""
    due = list(session.scalars(select(PickupItem).where(
        PickupItem.expired_at.is_(None), PickupItem.expires_at <= now)
        .order_by(PickupItem.id)))
    for item in due:
        item.expired_at, item.content_sealed, item.code_hash = now, b"", None
        unread = item.opened_at is None
        told: list[str] = []
        if unread:
            ticket = session.get(Ticket, item.ticket_id) if item.ticket_id else None
            _history(session, item, actor=actor, action="pickup-expired", now=now,
                     item=item.id)
            if ticket is not None:
                told = _told(session, ticket)
            else:
                told = [item.sender] if item.sender else []
            subject, text = expiry_notice_text(
                ticket.number if ticket else (item.queue_id or str(item.id)), item.recipient)
            for to in told:
                data = build_notice(reporting_mta=settings.smtp.hostname,
                                    postmaster=settings.delivery.postmaster, to=to,
                                    subject=subject, text=text, now=now)
                store_received(session, master, Envelope(
                    direction=Direction.OUTBOUND, mail_from="", rcpt_tos=[to], data=data),
                    actor=actor, now=now)
        audit.record(session, actor=actor, action=AuditAction.PICKUP_EXPIRED,
                     queue_id=item.queue_id, detail={
            "item": item.id, "ticket_id": item.ticket_id, "unread": unread, "told": told})
    session.flush()
    return [item.id for item in due]
