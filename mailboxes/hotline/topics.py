"""A mailbox's topic catalogue: the list calls are filed under. Changed by its lead (web
app) or an admin (``xgate mailbox topic``); each change is in the audit trail."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from mailboxes.hotline.models import Topic
from mailboxes.models import Mailbox
from mailboxes.tickets.states import TicketError

MAX_TOPIC = 100
MAX_TOPICS = 200


def clean_topic(text: str) -> str:
    name = " ".join(text.split())
    if not name:
        raise TicketError("a topic must not be empty", key="topic_empty")
    if len(name) > MAX_TOPIC:
        raise TicketError(f"a topic may have at most {MAX_TOPIC} characters",
                          key="topic_long", limit=MAX_TOPIC)
    return name


def list_topics(session: Session, mailbox_id: int) -> list[str]:
    return list(session.scalars(select(Topic.name).where(Topic.mailbox_id == mailbox_id)
                                .order_by(Topic.name)))


def add_topic(session: Session, mailbox: Mailbox, text: str, *, actor: str) -> bool:
    """Add a topic; False if the catalogue has it already."""
    name = clean_topic(text)
    known = list_topics(session, mailbox.id)
    if name in known:
        return False
    if len(known) >= MAX_TOPICS:
        raise TicketError(f"a mailbox may have at most {MAX_TOPICS} topics",
                          key="topic_count", limit=MAX_TOPICS)
    session.add(Topic(mailbox_id=mailbox.id, name=name))
    session.flush()
    audit.record(session, actor=actor, action=AuditAction.MAILBOX_TOPIC_ADDED,
                 detail={"mailbox": mailbox.address, "topic": name})
    return True


def remove_topic(session: Session, mailbox: Mailbox, text: str, *, actor: str) -> bool:
    """Remove a topic (calls filed under it keep it); False if there was none."""
    name = " ".join(text.split())
    removed = session.execute(delete(Topic).where(
        Topic.mailbox_id == mailbox.id, Topic.name == name)).rowcount  # type: ignore[attr-defined]
    if not removed:
        return False
    audit.record(session, actor=actor, action=AuditAction.MAILBOX_TOPIC_REMOVED,
                 detail={"mailbox": mailbox.address, "topic": name})
    return True


def check_topic(session: Session, mailbox_id: int, text: str | None) -> str | None:
    """A topic of the catalogue, or None for none; anything else is refused."""
    if text is None or not text.strip():
        return None
    name = " ".join(text.split())
    if name not in list_topics(session, mailbox_id):
        raise TicketError(f"{name!r} is not a topic of this mailbox", key="topic_unknown",
                          topic=name)
    return name
