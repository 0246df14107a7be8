"""Starting the two SMTP listeners on the running event loop.

``xgate serve smtp`` calls ``serve_smtp`` (or ``start_listeners`` and closes them itself);
tests use gateway.smtp.background, which runs the same listeners on a loop in a thread.
aiosmtpd's Controller is not used: it owns its own thread and loop and has no hook for the
connection limit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.queue.intake import IntakeCommitter
from gateway.services import Services
from gateway.settings import SmtpSettings
from gateway.smtp.auth import SubmissionHandler
from gateway.smtp.handler import EdgeHandler, ListenerKind
from gateway.smtp.protocol import ConnectionLimiter, GatewaySMTP
from gateway.tls import build_server_context

log = logging.getLogger(__name__)

# Greeting text after the host name; aiosmtpd's default would announce its version.
IDENT = "ESMTP xgate"
# Per connection. Bounds the work one connection can cause (an idle-timer reset comes with
# every command) while a partner MTA that reuses its connection is not cut off early.
MESSAGES_PER_CONNECTION = 1000
OTHER_COMMANDS_PER_CONNECTION = 20
AUTH_ATTEMPTS_PER_CONNECTION = 3
MIN_RCPT_PER_CONNECTION = 20_000


def command_call_limits(smtp: SmtpSettings) -> dict[str, int]:
    """aiosmtpd's ``command_call_limit``: past a limit it answers 421 and closes."""
    return {
        "*": OTHER_COMMANDS_PER_CONNECTION,
        "AUTH": AUTH_ATTEMPTS_PER_CONNECTION,
        "MAIL": MESSAGES_PER_CONNECTION,
        "RSET": MESSAGES_PER_CONNECTION,
        "DATA": MESSAGES_PER_CONNECTION,
        # Recipients past max_recipients get 452 without a lookup; this only ends a
        # connection that keeps probing addresses.
        "RCPT": max(MIN_RCPT_PER_CONNECTION, 10 * smtp.max_recipients),
    }


@dataclass
class Listener:
    kind: ListenerKind
    # One per listening socket (a host name may resolve to several addresses).
    servers: list[asyncio.Server]
    limiter: ConnectionLimiter
    committer: IntakeCommitter

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when the settings asked for port 0."""
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def active_connections(self) -> int:
        return len(self.limiter.active)

    async def close(self) -> None:
        """Stop accepting and close every open connection (an unfinished DATA is lost,
        which is safe: nothing was acknowledged)."""
        for server in self.servers:
            server.close()
        self.limiter.close_all()
        for server in self.servers:
            await server.wait_closed()
        # Shared with the other listener; stopping twice is harmless, and a session of the
        # other listener that submits afterwards gets 451, never a lost message.
        await asyncio.to_thread(self.committer.stop)


async def start_listeners(services: Services,
                          sockets: Mapping[str, Sequence[socket.socket]] | None = None
                          ) -> list[Listener]:
    """Start accepting on every enabled listener (inbound, submission): on the sockets
    given for it (keyed "smtp.inbound", "smtp.submission"; bound by ``xgate serve``, see
    gateway.serve.listen), else bound here.

    Raises gateway.tls.TlsError if the certificate or key is unusable, OSError if a port
    cannot be bound; nothing is left listening then.
    """
    tls_context = build_server_context(services.settings)
    _keep_aiosmtpd_quiet()
    committer = IntakeCommitter(services)
    committer.start()
    listeners: list[Listener] = []
    try:
        for kind in ListenerKind:
            if kind.settings(services.settings).enabled:
                given = (sockets or {}).get(f"smtp.{kind.value}", ())
                listeners.append(await start_listener(services, kind, tls_context, committer,
                                                      given))
    except BaseException:
        for listener in listeners:
            await listener.close()
        committer.stop()
        raise
    return listeners


async def start_listener(services: Services, kind: ListenerKind,
                         tls_context: ssl.SSLContext, committer: IntakeCommitter,
                         sockets: Sequence[socket.socket] = ()) -> Listener:
    loop = asyncio.get_running_loop()
    smtp = services.settings.smtp
    where = kind.settings(services.settings)
    submission = kind is ListenerKind.SUBMISSION
    handler = (SubmissionHandler(services, committer) if submission
               else EdgeHandler(services, kind, committer))
    limiter = ConnectionLimiter(smtp.max_connections)
    call_limits = command_call_limits(smtp)

    def protocol() -> GatewaySMTP:
        return GatewaySMTP(
            handler, limiter=limiter, line_length_limit=smtp.max_line_bytes, loop=loop,
            hostname=smtp.hostname, ident=IDENT,
            data_size_limit=smtp.max_message_bytes, timeout=smtp.timeout_seconds,
            command_call_limit=call_limits,
            tls_context=tls_context,
            # Staff content never travels in the clear; partners' MTAs may lack TLS.
            require_starttls=submission,
            auth_required=submission, auth_require_tls=True,
            # Inbound has no AUTH at all; submission's mechanisms come from its handler.
            auth_exclude_mechanism=() if submission else ("LOGIN", "PLAIN"),
        )

    if sockets:
        servers = [await loop.create_server(protocol, sock=sock) for sock in sockets]
    else:
        servers = [await loop.create_server(protocol, host=where.host, port=where.port)]
    listener = Listener(kind, servers, limiter, committer)
    host, port = listener.address
    log.info("SMTP listener started", extra={"listener": kind.value, "host": host,
                                             "port": port})
    return listener


async def serve_smtp(services: Services, stop: asyncio.Event,
                     sockets: Mapping[str, Sequence[socket.socket]] | None = None) -> None:
    """Run the listeners until ``stop`` is set, then close them."""
    listeners = await start_listeners(services, sockets)
    try:
        await stop.wait()
    finally:
        for listener in listeners:
            await listener.close()


def _keep_aiosmtpd_quiet() -> None:
    # aiosmtpd logs every message line at DEBUG and every command at INFO under "mail.log".
    # Message content must never reach a log, whatever level the root logger is at; our own
    # records (gateway.smtp.*) carry what an operator needs.
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.level < logging.WARNING:
        aiosmtpd_log.setLevel(logging.WARNING)
