"""What the staff ticket page shows of a ticket's pickup items: state and downloads, never
content (two statements whatever the number of items)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.portal.pickup.models import PickupDownload, PickupItem


@dataclass(frozen=True)
class ItemView:
    id: int
    recipient: str
    created_at: datetime
    expires_at: datetime
    opened_at: datetime | None
    locked: bool
    expired: bool
    downloads: tuple[tuple[int, datetime], ...]  # (attachment's place, when)
    # Put up by the delivery step without a code (no SMS to send it by): the caseworker
    # issues one and gives it to the citizen.
    needs_code: bool = False


def items_of_ticket(session: Session, ticket_id: int, *, now: datetime) -> list[ItemView]:
    """One statement: the items with their downloads joined (few of either per ticket)."""
    rows = session.execute(
        select(PickupItem.id, PickupItem.recipient, PickupItem.created_at,
               PickupItem.expires_at, PickupItem.opened_at, PickupItem.locked_at,
               PickupItem.code_hash.is_(None), PickupItem.expired_at,
               PickupDownload.part, PickupDownload.at)
        .outerjoin(PickupDownload, PickupDownload.item_id == PickupItem.id)
        .where(PickupItem.ticket_id == ticket_id)
        .order_by(PickupItem.id, PickupDownload.id))
    views: dict[int, ItemView] = {}
    downloads: dict[int, list[tuple[int, datetime]]] = {}
    for (item_id, recipient, created, expires, opened, locked, no_code, expired, part,
         at) in rows:
        if item_id not in views:
            gone = expired is not None or now >= expires
            views[item_id] = ItemView(item_id, recipient, created, expires, opened,
                                      locked is not None, gone, (),
                                      needs_code=bool(no_code) and locked is None)
            downloads[item_id] = []
        if part is not None:
            downloads[item_id].append((part, at))
    return [replace(v, downloads=tuple(downloads[v.id])) for v in views.values()]
