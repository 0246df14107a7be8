"""Rights: what a logged-in staff user may do, decided here and nowhere else.

Every active staff user who completed the login may use the consent register (caseworkers
record the releases they obtained) and the start page; only staff with the admin role may use
the key directory and the partners. The auditor and data-protection officer roles exist (they
are granted with ``xgate user role``) for the pages that will need them. Mailbox roles (lead,
agent) are decided by the mailbox memberships (mailboxes/) through checks added here.

Routers and pages depend on ``staff_user`` or ``admin_user`` (FastAPI dependencies reading
the identity that admin_ui.security.guard settled before the body was read) and never read a
user's roles themselves.
"""

from __future__ import annotations

from fastapi import Request

from admin_ui.security.errors import Forbidden
from admin_ui.security.guard import staff_of
from admin_ui.security.identity import Admin, Staff
from gateway.staff.roles import GlobalRole


def check_admin(user: Staff) -> Admin:
    """``user`` as an admin, or Forbidden: the one check of the admin right."""
    if GlobalRole.ADMIN not in user.roles:
        raise Forbidden(f"staff user {user.username} is not an admin")
    return Admin(user.username)


def staff_user(request: Request) -> Staff:
    """A FastAPI dependency: any active staff user; being logged in is the whole right."""
    return staff_of(request)


def admin_user(request: Request) -> Admin:
    """A FastAPI dependency: a staff user with the admin right (Forbidden without it)."""
    return check_admin(staff_of(request))
