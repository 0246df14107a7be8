"""SMTP AUTH (PLAIN and LOGIN) for the submission listener, checked against gateway.staff.users.

aiosmtpd's ``authenticator`` callback is synchronous and would run argon2 and a database query
on the event loop, stalling every other session for the length of a password hash. aiosmtpd
also lets a handler supply its own ``auth_<MECHANISM>`` methods (they replace the built-in
ones); these do the same SASL exchange and verify in a worker thread.

aiosmtpd itself refuses AUTH before STARTTLS (``auth_require_tls``) and MAIL/RCPT/DATA before
AUTH (``auth_required``); see gateway.smtp.server.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from base64 import b64decode

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from gateway.db import read_scope
from gateway.queue.intake import IntakeCommitter
from gateway.services import Services
from gateway.smtp import codes
from gateway.smtp.handler import EdgeHandler, ListenerKind, authenticated_user
from gateway.smtp.protocol import format_peer
from gateway.staff.login import Locked, LoginOutcome, Verified, password_login
from gateway.staff.throttle import Attempt
from gateway.staff.users import sender_addresses

log = logging.getLogger(__name__)

# Each check holds an argon2 buffer (64 MiB) and a thread; a flood of AUTH attempts waits
# here instead of exhausting memory or the thread pool the rest of the edge needs.
CONCURRENT_CHECKS = 4


class SubmissionHandler(EdgeHandler):
    def __init__(self, services: Services, committer: IntakeCommitter) -> None:
        super().__init__(services, ListenerKind.SUBMISSION, committer)
        self._checks = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """Staff may only submit as one of their own sender addresses: without this check
        any login could send as any colleague, or as the office's function addresses."""
        reply = await super().handle_MAIL(server, session, envelope, address, mail_options)
        if not reply.startswith("250"):
            return reply
        username = authenticated_user(session)
        if username is None:
            # aiosmtpd requires AUTH before MAIL here; if that ever changes, fail closed.
            envelope.mail_from = None
            return codes.AUTH_REQUIRED
        allowed: frozenset[str] | None = getattr(session, "sender_addresses", None)
        if allowed is None:
            try:
                allowed = await asyncio.to_thread(self._sender_addresses, username)
            except SQLAlchemyError:
                log.exception("sender address lookup failed", extra=self._where(session))
                envelope.mail_from = None
                return codes.TEMPORARY_FAILURE
            session.sender_addresses = allowed  # type: ignore[attr-defined]
        if address.lower() not in allowed:
            log.warning("sender address refused for login", extra={
                **self._where(session), "user": _loggable(username), "mail_from": address})
            envelope.mail_from = None
            return codes.SENDER_NOT_OWNED
        return reply

    def _sender_addresses(self, username: str) -> frozenset[str]:
        with read_scope(self.services.sessions) as session:
            return sender_addresses(session, username)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        response = await _first_response(server, args, "")
        if response is None:
            return AuthResult(success=False, handled=True)
        # RFC 4616: authzid NUL authcid NUL passwd.
        fields = response.split(b"\x00")
        if len(fields) != 3:
            await server.push(codes.AUTH_MALFORMED)
            return AuthResult(success=False, handled=True)
        authzid, login, password = fields
        if authzid and authzid != login:
            # Acting on behalf of another user is not something staff may do.
            return AuthResult(success=False, handled=False)
        return await self._check(server, "PLAIN", login, password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await _first_response(server, args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(server, "LOGIN", login, password)

    async def _check(self, server: SMTP, mechanism: str, login: bytes,
                     password: bytes) -> AuthResult:
        assert server.session is not None
        where = {"listener": self.kind.value, "peer": format_peer(server.session.peer),
                 "mechanism": mechanism}
        try:
            username, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("authentication failed: credentials not UTF-8", extra=where)
            return AuthResult(success=False, handled=False)
        where["username"] = _loggable(username)
        peer = server.session.peer
        address = peer[0] if isinstance(peer, tuple) and peer else None
        async with self._checks:
            try:
                outcome = await asyncio.to_thread(self._verify, username, secret, address)
            except Exception:
                log.exception("authentication check failed", extra=where)
                await server.push(codes.AUTH_TEMPORARY_FAILURE)
                return AuthResult(success=False, handled=True)
        if isinstance(outcome, Locked):
            # The same answer whether the name exists or not, and no password was checked.
            log.warning("authentication refused: too many failures", extra=where)
            await server.push(codes.AUTH_THROTTLED)
            return AuthResult(success=False, handled=True)
        if not isinstance(outcome, Verified):
            log.warning("authentication failed", extra=where)
            # handled=False: aiosmtpd answers 535 5.7.8.
            return AuthResult(success=False, handled=False)
        log.info("authenticated", extra=where)
        # The user name becomes session.auth_data; see gateway.smtp.handler.authenticated_user.
        return AuthResult(success=True, auth_data=username, message=codes.AUTH_OK)

    def _verify(self, username: str, password: str, address: str | None) -> LoginOutcome:
        # The shared throttle and the argon2 check between two short transactions
        # (gateway.staff.login): on SQLite a transaction holds the database's write lock, and
        # every commit of the spool and the workers would wait out each password check.
        services = self.services
        return password_login(services.sessions, Attempt(username, address), password,
                              services.settings.login, services.clock())


async def _first_response(server: SMTP, args: list[str], challenge: str) -> bytes | None:
    """The client's first SASL response: given with the AUTH command or asked for with 334.

    None if the client aborted or sent something undecodable (the reply went out already).
    """
    if len(args) == 1:
        response = await server.challenge_auth(challenge)
        return response if isinstance(response, bytes) else None
    try:
        return b64decode(args[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        await server.push(codes.AUTH_MALFORMED)
        return None


def _loggable(username: str) -> str:
    # The name comes from the client: keep log lines one line and short.
    short = username[:64]
    return short if short.isprintable() else repr(short)
