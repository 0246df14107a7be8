"""Filing a message into a shared mailbox, sealed, exactly once."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Insert, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey, Sealed, open_sealed, seal_later, sealed_bytes
from gateway.db import table_of
from gateway.db_blobs import STREAMED_BLOB_BYTES, sqlite_for_large, write_blob
from mailboxes.models import StoredMessage


def stored_context(mailbox_id: int, message_id: int) -> bytes:
    return f"mailbox:{mailbox_id}:{message_id}".encode()


_stored = table_of(StoredMessage)
STREAMED_FILING_BYTES = STREAMED_BLOB_BYTES


@functools.cache
def _filing(dialect: str, zeros: bool) -> Insert:
    """The insert that files a copy and returns its id, or no row where the mailbox has this
    message already (a retry after a crash): the unique (mailbox, message) decides, in the
    same statement, instead of a SELECT before it. ``ON CONFLICT DO NOTHING`` rather than
    catching the violation: a failed statement aborts the whole transaction on PostgreSQL."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(_stored)
    if zeros:
        # On SQLite a large copy is inserted as zeros and written through the blob handle
        # (gateway.db_blobs: a 50 MB message otherwise stayed resident in the worker).
        statement = statement.values(sealed=func.zeroblob(bindparam("length")))
    return statement.on_conflict_do_nothing(
        index_elements=[_stored.c.mailbox_id, _stored.c.message_id]).returning(_stored.c.id)


def seal_for_mailbox(master: MasterKey, mailbox_id: int, message_id: int,
                     content: bytes | Sequence[bytes]) -> Sealed:
    """The sealed copy of ``content``: the message, or its pieces one after another. A
    large one is sealed only as ``file_sealed`` writes it (``SealedStream``): the worker
    never holds a large message and its filed ciphertext at once."""
    pieces = (content,) if isinstance(content, bytes) else content
    return seal_later(master, pieces, stored_context(mailbox_id, message_id))


def file_sealed(session: Session, *, mailbox_id: int, message_id: int, mail_from: str,
                size: int, sealed: Sealed, now: datetime, queue_id: str | None = None
                ) -> int | None:
    """File a sealed copy; its id, or None if it was filed already (a retry after a
    crash)."""
    row = {"mailbox_id": mailbox_id, "message_id": message_id, "seal_message_id": message_id,
           "queue_id": queue_id, "mail_from": mail_from, "size": size, "delivered_at": now,
           "seen": False}
    dialect = session.get_bind().dialect.name
    raw = sqlite_for_large(session, sealed)
    if raw is not None:
        filed = session.execute(_filing(dialect, zeros=True),
                                {**row, "length": len(sealed)}).scalar_one_or_none()
        if filed is not None:
            write_blob(raw, _stored.name, "sealed", filed, sealed)
        return filed
    return session.execute(_filing(dialect, zeros=False),
                           {**row, "sealed": sealed_bytes(sealed)}).scalar_one_or_none()


def read_message(master: MasterKey, stored: StoredMessage) -> bytes:
    return open_sealed(master, stored.sealed,
                       stored_context(stored.mailbox_id, stored.seal_message_id))


def messages_in(session: Session, mailbox_id: int) -> list[StoredMessage]:
    return list(session.scalars(
        select(StoredMessage).where(StoredMessage.mailbox_id == mailbox_id)
        .order_by(StoredMessage.id)
    ))
