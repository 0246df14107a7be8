"""Filing a message into a shared mailbox, sealed, exactly once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from mailboxes.models import StoredMessage


def stored_context(mailbox_id: int, message_id: int) -> bytes:
    return f"mailbox:{mailbox_id}:{message_id}".encode()


def file_message(session: Session, master: MasterKey, *, mailbox_id: int, message_id: int,
                 mail_from: str, content: bytes, now: datetime) -> bool:
    """File the message; False if it was filed already (a retry after a crash)."""
    exists = session.scalar(
        select(StoredMessage.id).where(StoredMessage.mailbox_id == mailbox_id,
                                       StoredMessage.message_id == message_id)
    )
    if exists is not None:
        return False
    session.add(StoredMessage(
        mailbox_id=mailbox_id, message_id=message_id, mail_from=mail_from, size=len(content),
        delivered_at=now, sealed=seal(master, content, stored_context(mailbox_id, message_id)),
    ))
    session.flush()
    return True


def read_message(master: MasterKey, stored: StoredMessage) -> bytes:
    return open_sealed(master, stored.sealed, stored_context(stored.mailbox_id, stored.message_id))


def messages_in(session: Session, mailbox_id: int) -> list[StoredMessage]:
    return list(session.scalars(
        select(StoredMessage).where(StoredMessage.mailbox_id == mailbox_id)
        .order_by(StoredMessage.id)
    ))
