"""Who is asking, once authenticated: what routers and pages are handed."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.staff.roles import GlobalRole


@dataclass(frozen=True)
class Staff:
    """An authenticated, active staff user; ``username`` is what the audit trail records.
    ``roles`` are read by admin_ui.security.rights alone. ``csrf_token`` and ``session_id``
    are set when the request came with the login session's cookie, None with an API token."""

    user_id: int
    username: str
    roles: frozenset[GlobalRole]
    csrf_token: str | None = None
    session_id: int | None = None


@dataclass(frozen=True)
class Admin:
    """A staff user who holds the admin right (admin_ui.security.rights.check_admin)."""

    username: str


@dataclass(frozen=True)
class PendingLogin:
    """A login past the password, waiting for the second factor (or its enrolment)."""

    session_id: int
    user_id: int
    username: str
    enrolled: bool
    csrf_token: str
