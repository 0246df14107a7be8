"""A mailbox copy lives on its own: deleting its queue row leaves it, readable."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from crypto.errors import SealError
from gateway.db import session_scope
from gateway.models import Message
from gateway.services import Services
from mailboxes.directory import add_mailbox
from mailboxes.store import messages_in, read_message
from tests.support.pipeline import drain, enqueue

MSG = (b"From: a@partner.example\r\nTo: kita@jugendamt.example\r\nSubject: Hallo\r\n"
       b"Message-ID: <copy-1@partner.example>\r\n\r\nBody line\r\n")


def test_copy_outlives_its_queue_row(services: Services) -> None:
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, "kita@jugendamt.example", "Kita").id
    queue_id = enqueue(services, ["kita@jugendamt.example"], MSG)
    drain(services)
    with session_scope(services.sessions) as s:
        (copy,) = messages_in(s, box)
        assert copy.queue_id == queue_id and copy.message_id == copy.seal_message_id
        s.execute(delete(Message).where(Message.queue_id == queue_id))
    with session_scope(services.sessions) as s:
        (copy,) = messages_in(s, box)
        assert copy.message_id is None
        assert copy.queue_id == queue_id
        assert read_message(services.master_key, copy).endswith(b"Body line\r\n")
        assert s.scalar(select(Message.id).where(Message.queue_id == queue_id)) is None


def test_seal_context_is_the_id_it_was_filed_under(services: Services) -> None:
    """A copy moved to another seal id does not open: the context is bound, not guessed."""
    with session_scope(services.sessions) as s:
        box = add_mailbox(s, "kita@jugendamt.example", "Kita").id
    enqueue(services, ["kita@jugendamt.example"], MSG)
    drain(services)
    with session_scope(services.sessions) as s:
        (copy,) = messages_in(s, box)
        copy.seal_message_id += 1000
        s.flush()
        with pytest.raises(SealError):
            read_message(services.master_key, copy)
