"""A message's journey for the console's timeline, read from the audit trail (through
gateway.audit.view, which opens the sealed personal parts) and the message's row: received,
decrypted, signature, scan verdict, consent decision, key policy, each delivery attempt and
its reply, bounces and notices, and who read or downloaded it. Never its content.

Each audit entry becomes one step; its details are sorted into the aspects people ask about
(``ASPECTS``), in the order a message goes through them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.view import ReadableEntry, entries_for_message
from gateway.models import Direction, Message, MessageState, Recipient, RecipientState

# Queue ids are upper-case letters and digits (gateway.queue); anything else is no message.
_QUEUE_ID = re.compile(r"[0-9A-Z]{1,32}")

ASPECTS = ("received", "decryption", "signature", "scan", "consent", "key_policy", "delivery",
           "bounce", "read", "decision", "other")

_EXACT = {
    "direction": "received", "mail_from": "received", "recipients": "received",
    "size": "received", "peer": "received", "auth_user": "received", "tls": "received",
    "helo": "received",
    "encryption": "decryption", "encryption_algorithm": "decryption",
    "decrypted_with": "decryption", "opened_attachments": "decryption",
    "mime_type": "decryption", "inner_mime_type": "decryption",
    "signature": "signature", "signature_kind": "signature", "signer": "signature",
    "signer_fingerprint": "signature", "signer_subject": "signature",
    "signer_trust": "signature", "signature_reason": "signature",
    "signature_problem": "signature", "signature_warning": "signature",
    "scan": "scan",
    "inbound_policy": "key_policy", "partner": "key_policy", "signed_smime": "key_policy",
    "signed_openpgp": "key_policy",
    "recipient": "delivery", "mailbox": "delivery", "reason": "delivery",
    "stage": "delivery", "attempt": "delivery", "next_attempt_at": "delivery",
    "already_filed": "delivery", "ticket_number": "delivery", "response": "delivery",
    "relay": "delivery", "reply": "delivery", "filed": "delivery", "portal": "delivery",
    "failures": "bounce", "dsn": "bounce",
    "ticket": "read", "article": "read", "part": "read", "kind": "read", "file": "read",
    # The citizen portal's pickup of a reply: the item, opened (first or again), downloads.
    "item": "delivery", "expires": "delivery", "first": "read", "tries": "read",
}
_PREFIXES = (("consent:", "consent"), ("consent_", "consent"), ("plan:", "key_policy"),
             ("encryption:", "key_policy"), ("keys:", "key_policy"),
             ("pickup:", "delivery"))
# Actions whose entry is a decision about the message by a person (its details say why).
_DECISIONS = ("quarantine-", "statutory-approved", "consent-recheck", "consent-hold-expired",
              "retry", "requeued")


def aspect_of(action: str, key: str) -> str:
    if action.startswith(_DECISIONS) and key in ("reason", "approvals", "verdict", "detail"):
        return "decision"
    if action == "statutory-approved":
        return "consent"
    for prefix, aspect in _PREFIXES:
        if key.startswith(prefix):
            return aspect
    return _EXACT.get(key, "other")


@dataclass(frozen=True)
class Fact:
    key: str
    value: str


@dataclass(frozen=True)
class Aspect:
    name: str
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Step:
    seq: int
    at: datetime
    actor: str
    action: str
    aspects: tuple[Aspect, ...]
    personal_deleted: bool


@dataclass(frozen=True)
class RecipientLine:
    address: str
    state: RecipientState
    response: str | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class Timeline:
    queue_id: str
    direction: Direction
    state: MessageState
    reason: str | None
    received_at: datetime
    mail_from: str
    case_reference: str | None
    recipients: tuple[RecipientLine, ...]
    steps: tuple[Step, ...]


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_shown(v)}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def step_of(entry: ReadableEntry) -> Step:
    grouped: dict[str, list[Fact]] = {}
    for key, value in sorted(entry.details.items()):
        if value in (None, "", [], {}):
            continue
        grouped.setdefault(aspect_of(entry.action, key), []).append(Fact(key, _shown(value)))
    aspects = tuple(Aspect(name, tuple(grouped[name])) for name in ASPECTS if name in grouped)
    return Step(entry.seq, entry.at, entry.actor, entry.action, aspects,
                entry.personal_deleted)


def valid_queue_id(text: str) -> str | None:
    wanted = text.strip().upper()
    return wanted if _QUEUE_ID.fullmatch(wanted) else None


def timeline(session: Session, queue_id: str) -> Timeline | None:
    """The journey of the message ``queue_id``; None if there is no such message."""
    wanted = valid_queue_id(queue_id)
    if wanted is None:
        return None
    message = session.scalar(select(Message).where(Message.queue_id == wanted))
    if message is None:
        return None
    recipients = tuple(RecipientLine(r.address, r.state, r.response, r.delivered_at)
                       for r in session.scalars(select(Recipient).where(
                           Recipient.message_id == message.id).order_by(Recipient.id)))
    steps = tuple(step_of(e) for e in entries_for_message(session, wanted))
    return Timeline(wanted, message.direction, message.state, message.reason,
                    message.received_at, message.mail_from, message.case_reference,
                    recipients, steps)


def aspects_in(steps: Sequence[Step]) -> list[str]:
    """The aspects a journey touched, in ``ASPECTS`` order (for the page's summary)."""
    seen = {a.name for s in steps for a in s.aspects}
    return [name for name in ASPECTS if name in seen]
