"""A real SMTP sink on loopback (aiosmtpd in a background thread) that the relay talks to.

It records each accepted transaction with the DATA bytes exactly as they came over the wire
(dot-stuffed, terminator included) and as a server stores them (transparency dots removed).
Tests can make it refuse RCPT or DATA for given addresses, offer STARTTLS with a test
certificate, and stall before answering DATA until released. A stalled transaction whose
client goes away is discarded, as a real MTA does when the connection drops before it has
given its final reply.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.pki import CertPair
from tests.support.waiting import wait_until

_NULL_SENDER = "<>"


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    # What the server stores: the DATA with transparency dots removed.
    content: bytes
    # The DATA section as it came over the wire, including the final ".\r\n".
    wire_data: bytes
    tls: bool
    mail_options: tuple[str, ...]
    # time.time() as the sink answered the final dot with 250 (set against the worker's
    # "relay recorded" time, it is the window in which a crash makes a duplicate).
    replied_at: float = 0.0


class _SinkSMTP(SMTP):
    """aiosmtpd's protocol, plus a copy of every byte the client sends (after TLS)."""

    def __init__(self, sink: SmtpSink, **kwargs: object) -> None:
        super().__init__(sink, **kwargs)  # type: ignore[arg-type]
        self.wire = bytearray()
        # Where the DATA command begins: the client waits for each RCPT's reply (the sink
        # does not offer PIPELINING), so whatever arrives after the last one is DATA.
        self.data_mark = 0
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sink._connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._connection_closed(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        self.wire += data
        super().data_received(data)

    @property
    def gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()


@dataclass
class SmtpSink:
    """Start with ``start()``, stop with ``stop()`` (the ``sink`` fixtures do both)."""

    tls: CertPair | None = None
    hostname: str = "sink.test"
    host: str = "127.0.0.1"
    port: int = 0
    # Reply to every MAIL command instead of accepting it, e.g. "451 4.3.0 busy".
    mail_reply: str | None = None
    # Address -> full reply line, e.g. "550 5.1.1 user unknown".
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    # Address -> reply to DATA for a transaction that has this recipient.
    data_replies: dict[str, str] = field(default_factory=dict)
    # Set while a DATA is held by stall_data().
    stalled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._mail_commands = 0
        self._aborted = 0
        self._transcripts: list[bytes] = []
        self._stall = False
        self._released = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._connections: set[_SinkSMTP] = set()

    # -- what the tests read -------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def mail_commands(self) -> int:
        """MAIL commands seen: shows whether a transaction was even begun."""
        with self._lock:
            return self._mail_commands

    @property
    def aborted(self) -> int:
        """Transactions discarded because the client went away before the final reply."""
        with self._lock:
            return self._aborted

    def transcripts(self, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        """Everything each closed connection's client sent (decrypted after STARTTLS).

        The sink notices a close a moment after the client has gone, so this waits until
        at least ``count`` connections are closed.
        """
        def closed() -> bool:
            with self._lock:
                return len(self._transcripts) >= count

        wait_until(closed, timeout=timeout, what=f"{count} closed connection(s) at the sink")
        with self._lock:
            return list(self._transcripts)

    def live_transcripts(self) -> list[bytes]:
        """What the clients of the connections still open have sent so far. Called from
        another thread while the sink runs: a snapshot, good enough to look for a command."""
        return [bytes(conn.wire) for conn in list(self._connections)]

    def stall_data(self) -> None:
        """Hold every DATA (before replying) until release()."""
        with self._lock:
            self._stall = True
            self._released.clear()

    def release(self) -> None:
        """Let held transactions go on and stop stalling new ones."""
        with self._lock:
            self._stall = False
            self._released.set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SmtpSink:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smtp-sink",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("SMTP sink did not start within 10 s")
        if self._error is not None:
            raise RuntimeError("SMTP sink failed to start") from self._error
        return self

    def stop(self) -> None:
        self.release()
        loop = self._loop
        if loop is None or self._thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("SMTP sink thread did not stop within 10 s")

    def _connection_closed(self, conn: _SinkSMTP) -> None:
        self._connections.discard(conn)
        with self._lock:
            self._transcripts.append(bytes(conn.wire))

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        context = self._server_context()

        def factory() -> _SinkSMTP:
            return _SinkSMTP(self, loop=loop, hostname=self.hostname, tls_context=context,
                             enable_SMTPUTF8=True)

        try:
            server = loop.run_until_complete(loop.create_server(factory, self.host, 0))
        except OSError as exc:
            self._error = exc
            ready.set()
            loop.close()
            return
        self.port = int(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def _server_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        return context

    # -- aiosmtpd handler hooks (run in the sink's event loop) ----------------------------

    async def handle_MAIL(self, server: _SinkSMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        with self._lock:
            self._mail_commands += 1
        server.data_mark = len(server.wire)
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: _SinkSMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        server.data_mark = len(server.wire)
        refusal = self.rcpt_replies.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: _SinkSMTP, session: Session,
                          envelope: Envelope) -> str:
        # Drop the "DATA" command line; what follows is the data section.
        _, _, wire_data = bytes(server.wire[server.data_mark:]).partition(b"\r\n")
        if self._stall:
            self.stalled.set()
            try:
                while not self._released.is_set() and not server.gone:
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                # aiosmtpd cancels the session when the connection is lost.
                with self._lock:
                    self._aborted += 1
                raise
            finally:
                self.stalled.clear()
            if server.gone:
                with self._lock:
                    self._aborted += 1
                return "421 4.4.2 connection lost"
        for address in envelope.rcpt_tos:
            refusal = self.data_replies.get(address)
            if refusal is not None:
                return refusal
        mail_from = envelope.mail_from or ""
        delivery = Delivery(
            mail_from="" if mail_from == _NULL_SENDER else mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=envelope.original_content or b"",
            wire_data=wire_data,
            tls=session.ssl is not None,
            mail_options=tuple(envelope.mail_options),
            # aiosmtpd writes the reply as soon as this returns, in the same loop step.
            replied_at=time.time(),
        )
        with self._lock:
            self._deliveries.append(delivery)
            number = len(self._deliveries)
        return f"250 2.0.0 Ok: queued as {number}"

