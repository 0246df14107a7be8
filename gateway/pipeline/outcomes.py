"""Terminal outcomes a stage may raise. The pipeline driver catches them in one place.

They derive from BaseException, not Exception (as Mailman's do), so a stray
``except Exception`` in a stage or in something it calls cannot swallow one: an outcome
always reaches the driver. Code that must catch one names it (``except Outcome``).
"""

from __future__ import annotations

from gateway.delivery.notices import Text
from gateway.models import HoldKind, MessageState


class Outcome(BaseException):
    state: MessageState = MessageState.FAILED

    def __init__(self, reason: str, *, notice: Text | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # What the sender is told, where the reason holds internal detail (a signature
        # name, a limit) that is the admins' business, not an outside sender's; German and
        # English where the stage wrote both (gateway.delivery.notices).
        self.notice: Text = notice if notice is not None else reason


class Hold(Outcome):
    """Waits for something a person must provide (consent, approval, a key)."""

    state = MessageState.HELD

    def __init__(self, reason: str, *, kind: HoldKind, notice: Text | None = None,
                 inform: tuple[str, ...] = (), inform_text: Text = "") -> None:
        super().__init__(reason, notice=notice)
        # Recorded on the message, so what it waits for is queried, not read from the reason.
        self.kind = kind
        # Inside the office, the people who must act (the approvers of a statutory
        # transfer) and what they are told; the sender gets ``notice`` as always.
        self.inform = inform
        self.inform_text = inform_text


class Quarantine(Outcome):
    """Kept, unreadable to recipients, until an admin decides (infected, unparseable, ...)."""

    state = MessageState.QUARANTINED


class Reject(Outcome):
    """Refused for good: every pending recipient fails and the sender gets a DSN."""

    state = MessageState.REJECTED


class Defer(Outcome):
    """A transient fault: try again later."""

    state = MessageState.DEFERRED

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ScanFailed(Defer):
    """clamd took the message's content and gave no verdict (it crashed or hung on it): a
    retry like any deferral, but counted against the message, which the scan stage
    quarantines as unscannable once the count reaches its limit."""
