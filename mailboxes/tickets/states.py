"""Which state a ticket may go to from which: the one place that says so."""

from __future__ import annotations

from gateway.errors import GatewayError
from mailboxes.tickets.models import TicketState

S = TicketState
ALLOWED: dict[TicketState, frozenset[TicketState]] = {
    S.NEW: frozenset({S.OPEN, S.WAITING, S.CLOSED}),
    S.OPEN: frozenset({S.WAITING, S.CLOSED}),
    S.WAITING: frozenset({S.OPEN, S.CLOSED}),
    # Reopened by a person, or by a new message from the requester.
    S.CLOSED: frozenset({S.OPEN}),
}
# What a new message from outside makes of a ticket; the others stay as they are.
ON_MAIL_IN: dict[TicketState, TicketState] = {S.WAITING: S.OPEN, S.CLOSED: S.OPEN}
# What a reply sent from the mailbox makes of a ticket (now the requester's turn).
ON_REPLY: dict[TicketState, TicketState] = {S.NEW: S.WAITING, S.OPEN: S.WAITING}


class TicketError(GatewayError):
    """A ticket operation was refused; the message says why (in English, for the CLI and
    logs). ``key`` and ``values`` name the same reason for the web pages, which say it in the
    user's language from their text catalogue (``ticket_error.<key>``)."""

    def __init__(self, message: str, *, key: str | None = None, **values: object) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


def parse_state(text: str) -> TicketState:
    try:
        return TicketState(text.strip().lower())
    except ValueError:
        raise TicketError(f"unknown state {text!r}: use "
                          + ", ".join(s.value for s in TicketState), key="state") from None


def check_transition(current: TicketState, target: TicketState) -> None:
    if target not in ALLOWED[current]:
        raise TicketError(f"a ticket cannot go from {current.value} to {target.value}",
                          key="transition", current=current.value, target=target.value)
