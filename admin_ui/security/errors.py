"""Why a request is refused before its route runs: nobody is logged in, or the one who is
lacks the right.

Raised by the checks in this package, answered by each front end in its own way: the JSON
API with a 401 or 403 (admin_ui.api.errors); pages will answer with the login page.
"""

from __future__ import annotations


class AccessRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(AccessRefused):
    """No valid login. ``challenge`` is the WWW-Authenticate value telling a client how to
    log in; a 401 without it leaves HTTP clients without a way to."""

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(AccessRefused):
    """Logged in, but without the right the request needs."""
