"""Filing a message into a shared mailbox, sealed, exactly once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, open_sealed, seal
from gateway.db import table_of
from gateway.db_blobs import STREAMED_BLOB_BYTES, sqlite_for_large, write_blob
from mailboxes.models import StoredMessage


def stored_context(mailbox_id: int, message_id: int) -> bytes:
    return f"mailbox:{mailbox_id}:{message_id}".encode()


_stored = table_of(StoredMessage)
_FILED = select(_stored.c.id).where(_stored.c.mailbox_id == bindparam("box"),
                                    _stored.c.message_id == bindparam("mid"))
_FILE = insert(_stored).returning(_stored.c.id)
# On SQLite a large copy is inserted as zeros and written through the blob handle
# (gateway.db_blobs: a 50 MB message otherwise stayed resident in the worker after filing).
_FILE_ZEROS = insert(_stored).values(sealed=func.zeroblob(bindparam("length"))).returning(
    _stored.c.id)
STREAMED_FILING_BYTES = STREAMED_BLOB_BYTES


def seal_for_mailbox(master: MasterKey, mailbox_id: int, message_id: int,
                     content: bytes) -> bytes:
    return seal(master, content, stored_context(mailbox_id, message_id))


def file_sealed(session: Session, *, mailbox_id: int, message_id: int, mail_from: str,
                size: int, sealed: bytes, now: datetime, queue_id: str | None = None
                ) -> int | None:
    """File a sealed copy; its id, or None if it was filed already (a retry after a
    crash)."""
    if session.execute(_FILED, {"box": mailbox_id, "mid": message_id}).first() is not None:
        return None
    row = {"mailbox_id": mailbox_id, "message_id": message_id, "seal_message_id": message_id,
           "queue_id": queue_id, "mail_from": mail_from, "size": size, "delivered_at": now,
           "seen": False}
    raw = sqlite_for_large(session, sealed)
    if raw is not None:
        filed = int(session.execute(_FILE_ZEROS, {**row, "length": len(sealed)}).scalar_one())
        write_blob(raw, _stored.name, "sealed", filed, sealed)
        return filed
    return int(session.execute(_FILE, {**row, "sealed": sealed}).scalar_one())


def read_message(master: MasterKey, stored: StoredMessage) -> bytes:
    return open_sealed(master, stored.sealed,
                       stored_context(stored.mailbox_id, stored.seal_message_id))


def messages_in(session: Session, mailbox_id: int) -> list[StoredMessage]:
    return list(session.scalars(
        select(StoredMessage).where(StoredMessage.mailbox_id == mailbox_id)
        .order_by(StoredMessage.id)
    ))
