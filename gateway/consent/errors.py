"""The consent gate's errors. Each message is one line a caseworker or admin can act on."""

from __future__ import annotations

from gateway.errors import GatewayError


class ConsentError(GatewayError):
    """A consent operation was refused (bad input, a rule); the message says why.

    ``key`` (with ``values``) names the reason for pages that say it in the user's language
    (the console's catalogue has ``consent_error.<key>``); None where no page needs it."""

    def __init__(self, message: str, *, key: str | None = None, **values: object) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


class ConsentNotFound(ConsentError):
    """The release, version, document or held message named does not exist."""


class ConsentConflict(ConsentError):
    """The change contradicts what is stored (already revoked, changed meanwhile ...)."""
