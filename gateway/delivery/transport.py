"""The relay capability: hand a message to a next hop. Real and test implementations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.settings import RelayRoute


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class TransportError(Exception):
    """The next hop could not be reached or the session broke; always transient for the
    message unless ``permanent`` (e.g. TLS verification required and failed is not: the
    remote may fix its certificate, so it is retried until the lifetime ends)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


# Called with the replies (one per recipient) as soon as the next hop's final reply to the
# DATA is in, while the session is still open.
RepliesHook = Callable[[Mapping[str, Reply]], None]


class Transport(Protocol):
    def send(self, route: RelayRoute, mail_from: str, recipients: Sequence[str],
             data: bytes, *, on_replies: RepliesHook | None = None) -> dict[str, Reply]:
        """Send once; a reply per recipient. Raises TransportError if nothing was sent.

        ``on_replies`` is called exactly once, with the replies ``send`` then returns, before
        the session is ended (QUIT): the caller records the delivery there. Between the next
        hop's 250 and that record the message is delivered but we do not know it yet; a crash
        in that window makes a duplicate, so ending the session politely must not widen it.
        An exception from ``on_replies`` propagates (the session is closed first).
        """
        ...


@dataclass
class RecordingTransport:
    """Test double: records what it was asked to send and answers as told."""

    replies: dict[str, Reply] = field(default_factory=dict)
    error: TransportError | None = None
    sent: list[tuple[str, str, tuple[str, ...], bytes]] = field(default_factory=list)

    def send(self, route: RelayRoute, mail_from: str, recipients: Sequence[str],
             data: bytes, *, on_replies: RepliesHook | None = None) -> dict[str, Reply]:
        if self.error is not None:
            raise self.error
        self.sent.append((route.host, mail_from, tuple(recipients), data))
        replies = {r: self.replies.get(r, Reply(250, "2.0.0 Ok")) for r in recipients}
        if on_replies is not None:
            on_replies(replies)
        return replies


class NoDelivery:
    """For processes that run stages but deliver nothing (the quarantine re-scan): any
    attempt to send is a programming error, refused loudly instead of pretending."""

    def send(self, route: RelayRoute, mail_from: str, recipients: Sequence[str],
             data: bytes, *, on_replies: RepliesHook | None = None) -> dict[str, Reply]:
        raise TransportError("this process delivers nothing (quarantine re-scan)",
                             permanent=True)
