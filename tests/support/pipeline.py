"""Small helpers for tests that drive the queue: enqueue, look at a message, drain, read
what was filed in a shared mailbox."""

from __future__ import annotations

from sqlalchemy import select

from gateway.db import session_scope
from gateway.models import Direction, Message
from gateway.pipeline.worker import Worker
from gateway.queue.spool import Envelope, store_received
from gateway.services import Services
from mailboxes.directory import mailbox_id_for
from mailboxes.store import messages_in, read_message


def enqueue(services: Services, rcpts: list[str], data: bytes, *,
            mail_from: str = "a@partner.example",
            direction: Direction = Direction.INBOUND) -> str:
    with session_scope(services.sessions) as s:
        message = store_received(s, services.master_key, Envelope(
            direction, mail_from, rcpts, data), actor="test", now=services.clock())
        return message.queue_id


def load_message(services: Services, queue_id: str) -> Message:
    """The queue row with its recipients loaded (usable after the session closed)."""
    with session_scope(services.sessions) as s:
        message = s.scalars(select(Message).where(Message.queue_id == queue_id)).one()
        _ = list(message.recipients)
        return message


def bounces(services: Services) -> list[Message]:
    """Messages the gateway generated itself (null sender): DSNs and notices."""
    with session_scope(services.sessions) as s:
        found = list(s.scalars(select(Message).where(Message.mail_from == "")
                               .order_by(Message.id)))
        for message in found:
            _ = list(message.recipients)
        return found


def drain(services: Services, limit: int = 20) -> int:
    """Process runnable messages until none is left; how many were processed."""
    worker = Worker(services, "w-test")
    for done in range(limit):
        if not worker.process_one():
            return done
    raise AssertionError(f"queue not drained after {limit} messages")


def without_result_headers(delivered: bytes) -> bytes:
    """What was delivered minus the X-Xgate-* result headers the gateway put on top."""
    rest = delivered
    while rest.lower().startswith(b"x-xgate-"):
        rest = rest.split(b"\r\n", 1)[1]
    return rest


def filed_copies(services: Services, address: str, *, notices: bool = False) -> list[bytes]:
    """The copies filed in the shared mailbox ``address``, unsealed, oldest first; the
    gateway's own notices (null sender) only with ``notices``."""
    with session_scope(services.sessions) as s:
        found = mailbox_id_for(s, address)
        assert found is not None
        return [read_message(services.master_key, m) for m in messages_in(s, found[0])
                if notices or m.mail_from]
