"""Who is asking: an API token (``Authorization: Bearer``) or the login session's cookie.

Checked by admin_ui.security.guard before a request's body is read. Database work is short
and synchronous; the guard runs it in the thread pool. A wrong API token counts against the
client address in the shared login throttle (gateway.staff.throttle), and a locked address
is refused before any lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from admin_ui.security.errors import NotAuthenticated, SecondFactorPending, TooManyAttempts
from admin_ui.security.identity import PendingLogin, Staff
from gateway.clock import Clock
from gateway.db import read_scope, session_scope
from gateway.models import StaffUser
from gateway.settings import Settings
from gateway.staff import second_factor, throttle, tokens
from gateway.staff.models import WebSession
from gateway.staff.roles import roles_of
from gateway.web import sessions as web_sessions

REALM = "xgate admin"
CHALLENGE = f'Bearer realm="{REALM}"'


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


@dataclass(frozen=True)
class _Live:
    row_id: int
    user_id: int
    csrf_token: str
    second_factor: bool


class Authenticator:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 clock: Clock) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.timeouts = web_sessions.Timeouts(
            idle=timedelta(minutes=settings.web.session_idle_minutes),
            absolute=timedelta(hours=settings.web.session_absolute_hours))

    def identify(self, request: Request) -> Staff:
        """The staff user making ``request``, or NotAuthenticated (SecondFactorPending for a
        login that still needs its second factor), or TooManyAttempts."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer":
                raise NotAuthenticated("use an API token: Authorization: Bearer <token>",
                                       CHALLENGE)
            return self._by_token(value.strip(), client_address(request))
        return self._by_session(request.cookies.get(web_sessions.COOKIE))

    def _by_token(self, token: str, address: str | None) -> Staff:
        attempt = throttle.Attempt(None, address)
        now = self.clock()
        with session_scope(self.sessions) as session:
            wait = throttle.locked_for(session, attempt, now)
            if wait is not None:
                raise TooManyAttempts("too many failed attempts from this address", wait)
            user = tokens.user_for_token(session, token, now)
            if user is None:
                throttle.record_failure(session, attempt, self.settings.login, now)
            else:
                return Staff(user.user_id, user.username,
                             roles_of(session, user.user_id, user.admin))
        raise NotAuthenticated("the API token is wrong, revoked or its user disabled",
                               CHALLENGE)

    def _live(self, session: Session, token: str | None) -> tuple[WebSession, StaffUser]:
        row = web_sessions.lookup(session, token, self.timeouts, self.clock())
        if row is None:
            raise NotAuthenticated("login required", CHALLENGE)
        user = session.get(StaffUser, row.user_id)
        if user is None or user.disabled:
            web_sessions.end(session, row)
            raise NotAuthenticated("login required", CHALLENGE)
        return row, user

    def _by_session(self, token: str | None) -> Staff:
        with session_scope(self.sessions) as session:
            row, user = self._live(session, token)
            if not row.second_factor or (self.settings.web.require_2fa
                                         and not second_factor.enrolled(session, user.id)):
                raise SecondFactorPending("the second factor is still to come", CHALLENGE)
            return Staff(user.id, user.username, roles_of(session, user.id, user.admin),
                         csrf_token=row.csrf_token, session_id=row.id)

    def pending(self, request: Request) -> PendingLogin:
        """The login waiting for its second factor, or NotAuthenticated (none, or one that is
        complete already)."""
        with session_scope(self.sessions) as session:
            row, user = self._live(session, request.cookies.get(web_sessions.COOKIE))
            enrolled = second_factor.enrolled(session, user.id)
            # A complete login may still have to enrol: 2FA was made required after it began.
            if row.second_factor and (enrolled or not self.settings.web.require_2fa):
                raise NotAuthenticated("the login is complete already")
            return PendingLogin(row.id, user.id, user.username, enrolled, row.csrf_token)

    def session_csrf(self, request: Request) -> str | None:
        """The CSRF token of the request's live session (complete or not), else None."""
        with read_scope(self.sessions) as session:
            row = web_sessions.lookup(session, request.cookies.get(web_sessions.COOKIE),
                                      self.timeouts, self.clock())
            return row.csrf_token if row is not None else None
