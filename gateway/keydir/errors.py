"""The key directory's errors. Each message is one line an operator can act on."""

from __future__ import annotations

from gateway.errors import GatewayError


class KeyDirError(GatewayError):
    """A key directory operation was refused (bad input, policy); the message says why.

    ``key`` and ``values`` name the refusal for the web console, which words it in the
    user's language from its text catalogue; the message is the CLI's and the API's English.
    """

    def __init__(self, message: str, key: str = "", **values: object) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


class NotFound(KeyDirError):
    """The partner, key or own key named does not exist."""


class Conflict(KeyDirError):
    """The change contradicts what is stored (duplicate name, key already decided ...)."""
