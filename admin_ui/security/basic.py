"""Authentication by HTTP Basic over TLS: the active staff user the credentials belong to.

One verification path for every route, so the timing and the answers for wrong passwords,
unknown and disabled users are the same everywhere. Passwords are checked with argon2 as on
the submission listener (gateway.staff.users), outside any transaction: the verification takes
tens of milliseconds, and on SQLite an open write transaction would hold up the SMTP edge
that long. What the user may then do is decided in admin_ui.security.rights.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependency's annotations at
# run time, and they name ``basic``, a local of basic_login.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.security.errors import NotAuthenticated
from admin_ui.security.identity import Staff
from gateway.db import read_scope
from gateway.staff import users as staff

REALM = "xgate admin"


def _unauthorized(message: str) -> NotAuthenticated:
    return NotAuthenticated(message, f'Basic realm="{REALM}", charset="UTF-8"')


def authenticate(sessions: sessionmaker[Session],
                 credentials: HTTPBasicCredentials | None) -> Staff:
    """The active staff user these credentials belong to, or NotAuthenticated."""
    if credentials is None:
        raise _unauthorized("authentication required")
    username, password = credentials.username, credentials.password
    plausible = (0 < len(username) <= staff.MAX_USERNAME_LENGTH
                 and len(password) <= staff.MAX_PASSWORD_LENGTH)
    password_hash, disabled, admin = None, True, False
    if plausible:
        with read_scope(sessions) as session:
            user = staff.find_user(session, username)
            if user is not None:
                password_hash, disabled, admin = (user.password_hash, user.disabled,
                                                  user.admin)
    # Unknown users cost the same verification, so timing does not reveal user names.
    if not staff.password_matches(password_hash, password) or disabled:
        raise _unauthorized("wrong user name or password")
    return Staff(username, admin)


def basic_login(sessions: sessionmaker[Session]) -> Callable[..., Staff]:
    """A FastAPI dependency that yields the active staff user making the request."""
    basic = HTTPBasic(auto_error=False, realm=REALM)

    # Plain ``def``: FastAPI runs it in its thread pool; argon2 and the database block.
    def logged_in_staff(
            credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> Staff:
        return authenticate(sessions, credentials)

    return logged_in_staff
