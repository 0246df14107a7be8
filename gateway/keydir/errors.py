"""The key directory's errors. Each message is one line an operator can act on."""

from __future__ import annotations

from gateway.errors import GatewayError


class KeyDirError(GatewayError):
    """A key directory operation was refused (bad input, policy); the message says why."""


class NotFound(KeyDirError):
    """The partner, key or own key named does not exist."""


class Conflict(KeyDirError):
    """The change contradicts what is stored (duplicate name, key already decided ...)."""
