"""Rights: what a logged-in staff user may do, decided here and nowhere else.

Today there are two. Every active staff user may use the consent register (caseworkers
record the releases they obtained); only staff with the admin right may use the key
directory and the partners. Routers and pages depend on ``require_staff`` or
``require_admin`` and never read a user's flags themselves; rights per role (team lead,
data-protection officer, hotline, ...) are to be added here the same way.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependency's annotations at
# run time, and they name ``logged_in``, a local of require_admin.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.security.basic import basic_login
from admin_ui.security.errors import Forbidden
from admin_ui.security.identity import Admin, Staff


def check_admin(user: Staff) -> Admin:
    """``user`` as an admin, or Forbidden: the one check of the admin right."""
    if not user.admin:
        raise Forbidden(f"staff user {user.username} is not an admin")
    return Admin(user.username)


def require_staff(sessions: sessionmaker[Session]) -> Callable[..., Staff]:
    """A FastAPI dependency: any active staff user; being logged in is the whole right."""
    return basic_login(sessions)


def require_admin(sessions: sessionmaker[Session]) -> Callable[..., Admin]:
    """A FastAPI dependency: a staff user with the admin right (NotAuthenticated, or
    Forbidden for one without it)."""
    logged_in = require_staff(sessions)

    # Built on require_staff rather than beside it, so the cases of no valid login cannot
    # drift apart; the admin right is the only thing checked here.
    def admin_user(user: Annotated[Staff, Depends(logged_in)]) -> Admin:
        return check_admin(user)

    return admin_user
