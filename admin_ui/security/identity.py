"""Who is asking, once authenticated: what routers and pages are handed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Staff:
    """An authenticated, active staff user; ``username`` is what the audit trail records.
    ``admin`` is read by admin_ui.security.rights alone."""

    username: str
    admin: bool


@dataclass(frozen=True)
class Admin:
    """A staff user who holds the admin right (admin_ui.security.rights.check_admin)."""

    username: str
