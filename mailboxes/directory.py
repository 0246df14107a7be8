"""Looking up and managing shared mailboxes."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from gateway.db import table_of
from gateway.errors import GatewayError
from gateway.models import utcnow
from mailboxes.models import Mailbox

MAX_NAME_LENGTH = 255


class MailboxError(GatewayError):
    pass


# The refusals a page names in its own words (the CLI prints their English sentence).
class BadMailboxAddress(MailboxError):
    pass


class MailboxExists(MailboxError):
    pass


class BadMailboxName(MailboxError):
    pass


def normalise_address(address: str) -> str:
    # Local parts are case-sensitive by the RFC, but no office wants two mailboxes that
    # differ only in case; treat addresses case-insensitively.
    return address.strip().lower()


def find_mailbox(session: Session, address: str) -> Mailbox | None:
    return session.scalars(
        select(Mailbox).where(Mailbox.address == normalise_address(address))
    ).one_or_none()


_boxes = table_of(Mailbox)
_ROUTE = select(_boxes.c.id, _boxes.c.address).where(_boxes.c.address == bindparam("address"))


def mailbox_id_for(session: Session, address: str) -> tuple[int, str] | None:
    """The id and address of the mailbox for ``address`` (a hot path: no ORM objects)."""
    row = session.execute(_ROUTE, {"address": normalise_address(address)}).first()
    return None if row is None else (int(row[0]), str(row[1]))


def add_mailbox(session: Session, address: str, name: str, *, sensitive: bool = False) -> Mailbox:
    address = normalise_address(address)
    local, at, domain = address.partition("@")
    if not local or not at or "." not in domain or " " in address:
        raise BadMailboxAddress(f"not a valid mailbox address: {address!r}")
    if find_mailbox(session, address) is not None:
        raise MailboxExists(f"mailbox {address} exists already")
    mailbox = Mailbox(address=address, name=_checked_name(name), sensitive=sensitive,
                      created_at=utcnow())
    session.add(mailbox)
    session.flush()
    return mailbox


def change_mailbox(session: Session, address: str, *, name: str | None = None,
                   sensitive: bool | None = None) -> dict[str, tuple[object, object]]:
    """Rename a mailbox or mark it (not) sensitive; returns what changed, as (before, after)."""
    mailbox = find_mailbox(session, address)
    if mailbox is None:
        raise MailboxError(f"no mailbox {normalise_address(address)}")
    changes: dict[str, tuple[object, object]] = {}
    new_name = _checked_name(name) if name is not None else mailbox.name
    if new_name != mailbox.name:
        changes["name"] = (mailbox.name, new_name)
        mailbox.name = new_name
    if sensitive is not None and sensitive != mailbox.sensitive:
        changes["sensitive"] = (mailbox.sensitive, sensitive)
        mailbox.sensitive = sensitive
    session.flush()
    return changes


def _checked_name(name: str) -> str:
    text = " ".join(name.split())
    if not text or len(text) > MAX_NAME_LENGTH:
        raise BadMailboxName(f"a mailbox name must have 1 to {MAX_NAME_LENGTH} characters")
    return text


def list_mailboxes(session: Session) -> list[Mailbox]:
    return list(session.scalars(select(Mailbox).order_by(Mailbox.address)))


def count_messages(session: Session, mailbox_id: int) -> int:
    from mailboxes.models import StoredMessage

    return session.scalar(
        select(func.count()).select_from(StoredMessage)
        .where(StoredMessage.mailbox_id == mailbox_id)
    ) or 0


def all_addresses(session: Session) -> list[str]:
    return list(session.scalars(select(Mailbox.address)))
