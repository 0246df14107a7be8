"""Operator actions on queued messages: list, look at, retry. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gateway import audit
from gateway.audit import AuditAction
from gateway.errors import GatewayError
from gateway.models import Message, MessageState, RecipientState
from gateway.queue.wake import mark_runnable

# States an operator may send back to the workers. Delivered and rejected messages are done
# (a rejected one was bounced to its sender already); a processing one belongs to a worker.
# Not QUARANTINED: a quarantined message leaves only by two admins (xgate quarantine).
RETRYABLE_STATES = (MessageState.DEFERRED, MessageState.FAILED, MessageState.HELD)


class QueueAdminError(GatewayError):
    """The operator asked for something that cannot be done; the message says why."""


def list_messages(session: Session, state: MessageState | None = None,
                  limit: int = 100) -> Sequence[Message]:
    query = select(Message).options(selectinload(Message.recipients))
    if state is not None:
        query = query.where(Message.state == state)
    return session.scalars(query.order_by(Message.received_at, Message.id).limit(limit)).all()


def get_message(session: Session, queue_id: str) -> Message:
    message = session.scalars(
        select(Message).options(selectinload(Message.recipients))
        .where(Message.queue_id == queue_id.strip().upper())
    ).one_or_none()
    if message is None:
        raise QueueAdminError(f"no message with queue id {queue_id!r}")
    return message


def retry(session: Session, queue_id: str, *, operator: str, now: datetime) -> Message:
    """Make a deferred, failed, held or quarantined message runnable at once."""
    message = get_message(session, queue_id)
    previous, previous_reason = message.state, message.reason
    if previous not in RETRYABLE_STATES:
        raise QueueAdminError(_why_not(message))
    # "received": the message runs through the whole pipeline again, as if it had just come
    # in; recipients already delivered or bounced stay so and are not sent to twice.
    reset = _unbounced_failures(message) if previous == MessageState.FAILED else []
    message.state = MessageState.RECEIVED
    message.hold_kind = None
    message.next_attempt_at = now
    message.updated_at = now
    message.reason = f"retry requested by {operator}"
    mark_runnable(session)
    audit.record(session, actor=operator, action=AuditAction.RETRY, queue_id=message.queue_id,
                 detail={"previous_state": previous.value,
                         "previous_reason": previous_reason,
                         **({"recipients_reset": reset} if reset else {})})
    return message


def _unbounced_failures(message: Message) -> list[str]:
    """A failed notice of the gateway (null sender) was bounced to nobody: its failed
    recipients are tried again. Anyone else's failed recipients were bounced to the sender
    already and stay failed."""
    if message.mail_from:
        return []
    reset = []
    for recipient in message.recipients:
        if recipient.state == RecipientState.FAILED:
            recipient.state = RecipientState.PENDING
            reset.append(recipient.address)
    return reset


def _why_not(message: Message) -> str:
    qid, state = message.queue_id, message.state
    if state == MessageState.DELIVERED:
        return f"message {qid} was delivered; a delivered message cannot be retried"
    if state == MessageState.REJECTED:
        return (f"message {qid} was rejected and bounced to its sender; it cannot be retried "
                "(the sender has to send it again)")
    if state == MessageState.PROCESSING:
        return f"message {qid} is being processed by {message.lease_owner}; try again later"
    if state == MessageState.QUARANTINED:
        return (f"message {qid} is quarantined; it is released only by two admins "
                "(xgate quarantine release)")
    return f"message {qid} is {state.value} and waits for a worker already; nothing to retry"
