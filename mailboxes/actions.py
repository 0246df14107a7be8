"""Changes to shared mailboxes made by a person, each recorded in the audit trail.

A mailbox decides where inbound mail is filed, and a *sensitive* one makes everything it
sends outside a report that must pass the consent gate; creating one or changing that mark
is recorded in the same transaction, naming who did it and what changed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import AuditAction
from mailboxes.directory import add_mailbox, change_mailbox, normalise_address
from mailboxes.models import Mailbox


def create_mailbox(session: Session, address: str, name: str, *, actor: str,
                   sensitive: bool = False) -> Mailbox:
    mailbox = add_mailbox(session, address, name, sensitive=sensitive)
    audit.record(session, actor=actor, action=AuditAction.MAILBOX_ADDED, detail={
        "mailbox": mailbox.address, "name": mailbox.name, "sensitive": mailbox.sensitive})
    return mailbox


def update_mailbox(session: Session, address: str, *, actor: str, name: str | None = None,
                   sensitive: bool | None = None) -> dict[str, tuple[object, object]]:
    """Rename a mailbox or change its sensitive mark; returns what changed (before, after).

    Nothing changed, nothing recorded.
    """
    changes = change_mailbox(session, address, name=name, sensitive=sensitive)
    if changes:
        audit.record(session, actor=actor, action=AuditAction.MAILBOX_CHANGED, detail={
            "mailbox": normalise_address(address),
            **{field: {"from": before, "to": after}
               for field, (before, after) in changes.items()}})
    return changes
