"""aiosmtpd's SMTP protocol with the edge's hardening added.

One instance per connection. What it adds to aiosmtpd 1.4.6:

- a per-listener connection limit (421 and close, before the greeting);
- the line length limit from the settings (aiosmtpd only has it as a class attribute);
- per-connection command size limits (aiosmtpd's are a class-level dict shared by every
  connection, which each EHLO grows and each new connection resets);
- an explicit discard of anything the client pipelined after STARTTLS (CVE-2011-0411);
- RFC 3463 enhanced status codes where aiosmtpd's own reply has none (552 for size);
- the DATA phase read in chunks at C speed (gateway.smtp.data_reader) and a fast path for
  plain ``<local@domain>`` addresses: together with aiosmtpd's line loop and its RFC 5322
  address parser they were four tenths of the edge's CPU;
- the message handed to the handler as the buffer it was received in (``EdgeEnvelope``),
  not joined into bytes: aiosmtpd held a large message twice (lines, then their join).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from gateway.smtp import codes
from gateway.smtp.data_reader import read_data

log = logging.getLogger(__name__)


class ConnectionLimiter:
    """Counts one listener's open connections. Used only from the event loop's thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: set[GatewaySMTP] = set()

    def acquire(self, connection: GatewaySMTP) -> bool:
        if len(self.active) >= self.limit:
            return False
        self.active.add(connection)
        return True

    def release(self, connection: GatewaySMTP) -> None:
        self.active.discard(connection)

    def close_all(self) -> None:
        for connection in list(self.active):
            connection.close()


class _Session(Session):
    # aiosmtpd 1.4 assigns the deprecated ``login_data`` after every successful AUTH and
    # logs a warning each time; a plain attribute here replaces the warning property.
    login_data: Any = None
    # The envelope senders the authenticated staff user may use, looked up once per session.
    sender_addresses: frozenset[str] | None = None


class EdgeEnvelope(Envelope):
    """aiosmtpd's envelope with the message as DATA received it: the receive buffer itself
    (gateway.smtp.data_reader). ``content`` and ``original_content`` stay None: bytes of it
    would be a second whole copy of a large message."""

    def __init__(self) -> None:
        super().__init__()
        self.message: bytearray | None = None


def take_message(envelope: Envelope) -> bytearray | None:
    """The message of an envelope after DATA, the receive buffer itself (None if none),
    handed over: the envelope lets go of it, so nothing else holds or writes to it."""
    if not isinstance(envelope, EdgeEnvelope):
        return None
    message, envelope.message = envelope.message, None
    return message


class GatewaySMTP(SMTP):
    def __init__(self, handler: Any, *, limiter: ConnectionLimiter, line_length_limit: int,
                 **kwargs: Any) -> None:
        # Both must exist before SMTP.__init__: it sizes the StreamReader from the first and
        # clears the second.
        self.line_length_limit = line_length_limit
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._limiter = limiter
        self._refused = False
        super().__init__(handler, **kwargs)

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def _create_envelope(self) -> Envelope:
        return EdgeEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            # A new connection (not the TLS layer arriving after STARTTLS).
            if not self._limiter.acquire(self):
                self._refuse(transport)
                return
            super().connection_made(transport)
            return
        # STARTTLS handshake done. Whatever is still buffered arrived in plaintext *before*
        # the handshake, pipelined after STARTTLS: executing it now would run an attacker's
        # injected commands inside the TLS session (CVE-2011-0411). aiosmtpd 1.4.6 clears
        # the buffer in connection_made too; clearing it here again keeps the guarantee if a
        # future aiosmtpd stops doing that.
        buffer = _read_buffer(self._reader)
        if buffer:
            log.warning("discarded commands pipelined after STARTTLS",
                        extra={"peer": _peer(transport), "discarded_bytes": len(buffer)})
        super().connection_made(transport)
        _read_buffer(self._reader).clear()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        self._refused = True
        log.warning("connection refused: connection limit reached",
                    extra={"peer": _peer(transport), "limit": self._limiter.limit})
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(codes.TOO_MANY_CONNECTIONS.encode("ascii") + b"\r\n")
        transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        result: bool | None = super().eof_received()
        return result

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            # aiosmtpd's connection_lost expects the session it never started for us; the
            # stream protocol underneath still needs to see the end.
            asyncio.StreamReaderProtocol.connection_lost(self, error)
            return
        self._limiter.release(self)
        super().connection_lost(error)

    def close(self) -> None:
        """Close this connection (shutdown); connection_lost does the bookkeeping."""
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: str | bytes) -> None:
        # Every reply goes through here, aiosmtpd's own ones too: those that lack an
        # enhanced status code are swapped for ours.
        if isinstance(status, str):
            await super().push(codes.REPLACED_REPLIES.get(status, status))
        else:
            await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # Most addresses are a plain dot-atom in angle brackets, for which aiosmtpd's full
        # RFC 5322 parser returns exactly the text between them. Anything else (quoted
        # local parts, comments, source routes, the null sender) still goes to the parser.
        match = _PLAIN_ANGLE_ADDR.match(arg)
        if match is None:
            result: tuple[str | None, str | None] = super()._getaddr(arg)
            return result
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match.group(2)

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's checks and replies before and after the data, unchanged; only the
        # reading in between is gateway.smtp.data_reader's.
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # The idle timeout restarts with every chunk: it bounds silence, not how long a
        # large message may take (aiosmtpd's own DATA loop never restarted it).
        result = await read_data(self._reader, max_bytes=self.data_size_limit or None,
                                 max_line=self.line_length_limit,
                                 on_progress=self._reset_timeout)
        if result.closed:
            log.info("connection lost during DATA")
            self._writer.close()
            return
        if result.bare_line_end is not None:
            await self.push(result.bare_line_end)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if result.too_long:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if result.too_much or result.content is None:
            await self.push(codes.MESSAGE_TOO_LARGE)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        # The envelope holds the only reference to the receive buffer: the handler takes it
        # over (and lets go of it here), so the message exists once from the first byte
        # read to the commit.
        assert isinstance(self.envelope, EdgeEnvelope)
        self.envelope.message = result.content
        del result
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


# RFC 5321 Mailbox as a dot-atom local part and a domain of letters, digits and hyphens, in
# angle brackets, then the parameters (not a comment, which the full parser would consume).
# Anything this does not match takes the full parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ANGLE_ADDR = re.compile(
    rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>\s*+((?!\().*)\Z", re.DOTALL)


def _read_buffer(reader: asyncio.StreamReader) -> bytearray:
    # StreamReader has no public way to drop buffered bytes.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    return buffer


def _peer(transport: asyncio.BaseTransport) -> str:
    return format_peer(transport.get_extra_info("peername"))


def format_peer(peername: object) -> str:
    """``host:port`` (``[v6]:port``) of a socket peer name, or "" if unknown."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = str(peername[0]), peername[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ""
