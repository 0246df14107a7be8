"""Which shared mailbox's work a held report is: the console shows a report to the team it
came from (admin_ui.security.rights.consent_scope decides who that is).

A report belongs to a mailbox when it is a reply from one of the mailbox's tickets (the
ticket's article carries its queue id) or when its envelope sender is the mailbox's address
(a caseworker's mail client sending as the team). A report sent from a personal address
belongs to no mailbox: in the console only admins see it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.models import Message
from mailboxes.models import Mailbox
from mailboxes.tickets.models import Article, Ticket


def report_mailboxes(session: Session, queue_ids: Collection[str]) -> dict[str, frozenset[int]]:
    """The mailboxes each of ``queue_ids`` belongs to (a queue id of none is left out);
    two queries whatever the number."""
    if not queue_ids:
        return {}
    ids = list(queue_ids)
    found: dict[str, set[int]] = {}
    replies = session.execute(select(Article.queue_id, Ticket.mailbox_id)
                              .join(Ticket, Ticket.id == Article.ticket_id)
                              .where(Article.queue_id.in_(ids))).all()
    senders = session.execute(select(Message.queue_id, Mailbox.id)
                              .join(Mailbox, Mailbox.address == func.lower(Message.mail_from))
                              .where(Message.queue_id.in_(ids))).all()
    for queue_id, mailbox_id in [*replies, *senders]:
        if queue_id is not None:
            found.setdefault(queue_id, set()).add(mailbox_id)
    return {queue_id: frozenset(boxes) for queue_id, boxes in found.items()}
