"""The citizen's verified second channel for a pickup code: the call-back number she gave on
the hotline for the ticket the reply belongs to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.at_rest import MasterKey
from mailboxes.hotline.calls import open_details
from mailboxes.hotline.models import Call


def citizen_number(session: Session, master: MasterKey, ticket_id: int | None) -> str | None:
    """The call-back number the citizen gave on the hotline for this ticket (the latest
    call that has one), or None."""
    if ticket_id is None:
        return None
    calls = session.scalars(select(Call).where(Call.ticket_id == ticket_id)
                            .order_by(Call.id.desc()))
    for call in calls:
        number = open_details(master, call.id, call.details_sealed).number.strip()
        if number:
            return number
    return None
