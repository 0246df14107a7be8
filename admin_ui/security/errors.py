"""Why a request is refused before its route runs: nobody is logged in, the login waits for
its second factor, too many failed attempts, a missing CSRF token, or a lacking right.

Raised by the checks in this package, answered by each front end in its own way
(admin_ui.errors): the JSON API with a 401, 403 or 429; pages with a redirect to the login
or an error page.
"""

from __future__ import annotations

from datetime import timedelta


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


class SecondFactorPending(NotAuthenticated):
    """The password was right, the second factor (or its enrolment) is still to come."""


class TooManyAttempts(AccessRefused):
    def __init__(self, message: str, wait: timedelta) -> None:
        super().__init__(message)
        self.wait = wait


class Forbidden(AccessRefused):
    """Logged in, but without the right the request needs."""


class CsrfRefused(Forbidden):
    """An unsafe request made with the login session but without its CSRF token."""
