"""Who may use the JSON API, by HTTP Basic over TLS: any active staff user (the consent
register, used by caseworkers), or only those with the admin right (the key directory).

Both dependencies share one verification path, so the timing and the answers for wrong
passwords, unknown and disabled users are the same everywhere. Passwords are checked with
argon2 as on the submission listener (gateway.staff), outside any transaction: the
verification takes tens of milliseconds, and on SQLite an open write transaction would hold
up the SMTP edge that long.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations at
# run time, and they name ``basic`` and ``require_staff``, locals of the factories below.
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.orm import Session, sessionmaker

from gateway import staff
from gateway.db import read_scope

REALM = "xgate admin"


@dataclass(frozen=True)
class Staff:
    """The authenticated staff user; ``username`` is what the audit trail records."""

    username: str
    admin: bool


@dataclass(frozen=True)
class Admin:
    """The authenticated admin; ``username`` is what the audit trail records."""

    username: str


class ApiError(Exception):
    """An answer other than success, as JSON ``{"error": ..., "message": ...}``."""

    def __init__(self, status: int, error: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})


def install_api_error_handler(app: FastAPI) -> None:
    # Its own handler because the generic one (admin_ui.api.errors) does not pass headers on,
    # and a 401 without WWW-Authenticate leaves clients without a way to log in.
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "message": exc.message},
                            status_code=exc.status, headers=exc.headers)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message,
                    {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


def _authenticate(sessions: sessionmaker[Session],
                  credentials: HTTPBasicCredentials | None) -> Staff:
    """The one verification path: the active staff user these credentials belong to, or 401."""
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


def staff_dependency(sessions: sessionmaker[Session]) -> Callable[..., Staff]:
    """A FastAPI dependency that yields the active staff user making the request, or 401."""
    basic = HTTPBasic(auto_error=False, realm=REALM)

    # Plain ``def``: FastAPI runs it in its thread pool; argon2 and the database block.
    def require_staff(
            credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> Staff:
        return _authenticate(sessions, credentials)

    return require_staff


def admin_dependency(sessions: sessionmaker[Session]) -> Callable[..., Admin]:
    """A FastAPI dependency that yields the admin making the request, or answers 401/403."""
    require_staff = staff_dependency(sessions)

    # Built on require_staff rather than beside it, so the 401 cases cannot drift apart;
    # the admin right is the only thing checked here.
    def require_admin(user: Annotated[Staff, Depends(require_staff)]) -> Admin:
        if not user.admin:
            raise ApiError(403, "forbidden", f"staff user {user.username} is not an admin")
        return Admin(user.username)

    return require_admin
