"""The web login, step by step: the password (through the shared throttle), then the second
factor (a TOTP code or a recovery code) or, for a user without one, its enrolment; logout and
logout everywhere.

Each step that gets the login further replaces the session token (gateway.web.sessions
rotates it), so a token known before the step is worthless after it. A wrong code counts in
the same throttle as a wrong password: the second factor cannot be guessed either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import segno
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.security.authentication import Authenticator
from admin_ui.security.identity import PendingLogin, Staff
from crypto.at_rest import MasterKey
from gateway import audit
from gateway.audit import AuditAction
from gateway.db import read_scope, session_scope
from gateway.models import StaffUser
from gateway.staff import second_factor, throttle
from gateway.staff import users as staff_users
from gateway.staff.login import Locked, Refused, note_failure, password_login
from gateway.staff.models import WebSession
from gateway.web import sessions as web_sessions


@dataclass(frozen=True)
class Advanced:
    """The login got further: set ``token`` as the session cookie and go to ``next_path``."""

    token: str
    next_path: str


@dataclass(frozen=True)
class Enrolment:
    secret: str
    qr_data_uri: str


class WebLogin:
    def __init__(self, auth: Authenticator, master_key: Callable[[], MasterKey]) -> None:
        self.auth = auth
        self.master_key = master_key

    @property
    def _sessions(self) -> sessionmaker[Session]:
        return self.auth.sessions

    def password(self, username: str, password: str, address: str | None,
                 old_token: str | None) -> Advanced | Refused | Locked:
        settings = self.auth.settings
        now = self.auth.clock()
        outcome = password_login(self._sessions, throttle.Attempt(username, address), password,
                                 settings.login, now)
        if isinstance(outcome, Refused | Locked):
            return outcome
        with session_scope(self._sessions) as session:
            self._end_token(session, old_token)
            enrolled = second_factor.enrolled(session, outcome.user_id)
            complete = not enrolled and not settings.web.require_2fa
            _row, token = web_sessions.start(session, outcome.user_id, now,
                                             second_factor=complete)
            if complete:
                _record_login(session, username, "password", address)
        if complete:
            return Advanced(token, "/")
        return Advanced(token, "/login/code" if enrolled else "/login/enrol")

    def code(self, pending: PendingLogin, code: str,
             address: str | None) -> Advanced | Refused | Locked:
        """A TOTP code, or a recovery code, for the login waiting for it."""
        attempt = throttle.Attempt(pending.username, address)
        now = self.auth.clock()
        with session_scope(self._sessions) as session:
            wait = throttle.locked_for(session, attempt, now)
            if wait is not None:
                return Locked(wait)
            if second_factor.verify_code(session, pending.user_id, code, self.master_key(),
                                         now):
                throttle.record_success(session, attempt)
                return Advanced(self._complete(session, pending, "totp", address), "/")
        if self._recovery_code(pending, code):
            with session_scope(self._sessions) as session:
                throttle.record_success(session, attempt)
                return Advanced(self._complete(session, pending, "recovery-code", address), "/")
        note_failure(self._sessions, attempt, self.auth.settings.login, now)
        return Refused()

    def _recovery_code(self, pending: PendingLogin, code: str) -> bool:
        with read_scope(self._sessions) as session:
            hashes = second_factor.recovery_hashes(session, pending.user_id)
        # argon2 outside any transaction (see gateway.staff.login).
        code_id = second_factor.recovery_matches(hashes, code)
        if code_id is None:
            return False
        with session_scope(self._sessions) as session:
            return second_factor.spend_recovery_code(session, code_id, pending.username,
                                                     self.auth.clock())

    def enrolment(self, pending: PendingLogin) -> Enrolment:
        """The secret waiting for confirmation (made now if there is none)."""
        master = self.master_key()
        with session_scope(self._sessions) as session:
            secret = second_factor.pending_secret(session, pending.user_id, master)
            if secret is None:
                secret = second_factor.begin_enrolment(session, pending.user_id, master)
        uri = second_factor.provisioning_uri(secret, pending.username)
        qr = segno.make_qr(uri, error="m").svg_data_uri(scale=5, border=2)
        return Enrolment(secret, qr)

    def confirm_enrolment(self, pending: PendingLogin, code: str,
                          address: str | None) -> tuple[Advanced, list[str]] | Refused | Locked:
        attempt = throttle.Attempt(pending.username, address)
        now = self.auth.clock()
        with session_scope(self._sessions) as session:
            wait = throttle.locked_for(session, attempt, now)
            if wait is not None:
                return Locked(wait)
            try:
                codes = second_factor.confirm_enrolment(session, pending.user_id,
                                                        pending.username, code,
                                                        self.master_key(), now)
            except second_factor.SecondFactorError:
                pass
            else:
                return Advanced(self._complete(session, pending, "enrolment", address),
                                "/"), codes
        note_failure(self._sessions, attempt, self.auth.settings.login, now)
        return Refused()

    def new_recovery_codes(self, staff: Staff) -> list[str]:
        with session_scope(self._sessions) as session:
            return second_factor.new_recovery_codes(session, staff.user_id)

    def _complete(self, session: Session, pending: PendingLogin, via: str,
                  address: str | None) -> str:
        row = session.get(WebSession, pending.session_id)
        assert row is not None
        _record_login(session, pending.username, via, address)
        staff_users.note_login(session, pending.user_id, self.auth.clock())
        return web_sessions.rotate(session, row, self.auth.clock(), second_factor=True)

    def logout(self, token: str | None) -> None:
        with session_scope(self._sessions) as session:
            row = self._end_token(session, token)
            if row is not None:
                user = session.get(StaffUser, row.user_id)
                if user is not None:
                    audit.record(session, actor=user.username, action=AuditAction.WEB_LOGOUT)

    def logout_everywhere(self, staff: Staff) -> int:
        with session_scope(self._sessions) as session:
            ended = web_sessions.end_all(session, staff.user_id)
            audit.record(session, actor=staff.username,
                         action=AuditAction.WEB_LOGOUT_EVERYWHERE, detail={"sessions": ended})
            return ended

    def _end_token(self, session: Session, token: str | None) -> WebSession | None:
        # A long timeout: ending a session must work however old it is.
        forever = web_sessions.Timeouts(timedelta(days=3650), timedelta(days=3650))
        row = web_sessions.lookup(session, token, forever, self.auth.clock())
        if row is not None:
            web_sessions.end(session, row)
        return row


def _record_login(session: Session, username: str, via: str, address: str | None) -> None:
    """A completed login, in the trail: who (sealed, as every person), how, from where."""
    audit.record(session, actor=username, action=AuditAction.WEB_LOGIN,
                 detail={"via": via, "address": address})
