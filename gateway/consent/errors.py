"""The consent gate's errors. Each message is one line a caseworker or admin can act on."""

from __future__ import annotations

from gateway.errors import GatewayError


class ConsentError(GatewayError):
    """A consent operation was refused (bad input, a rule); the message says why."""


class ConsentNotFound(ConsentError):
    """The release, version, document or held message named does not exist."""


class ConsentConflict(ConsentError):
    """The change contradicts what is stored (already revoked, changed meanwhile ...)."""
