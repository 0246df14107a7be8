"""The demo catcher: a local SMTP server that keeps what the gateway relays to it.

``xgate init --demo`` routes the office's own domain and every other domain here and switches
it on (``demo.catcher``); ``xgate serve`` runs it as the part ``catcher``. So in a demo the
notices to staff, the bounces and the mail to partners arrive somewhere a person can read
them (``xgate demo mail list | show N``), sealed with the master key on disk
(``gateway.demo.mail``). It accepts every recipient, delivers nothing and offers no TLS or
AUTH: it listens on loopback for the gateway alone, never in production.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiosmtpd.smtp import SMTP, Envelope, Session

from crypto.at_rest import MasterKey
from crypto.errors import CryptoError
from gateway.demo import mail as demo_mail
from gateway.settings import Settings

log = logging.getLogger(__name__)

# A port in use (another demo on this machine) is tried again, not fatal: the gateway runs
# on, and mail for the catcher waits in the queue as deferred meanwhile.
BIND_RETRY_SECONDS = 10.0


class CatcherHandler:
    def __init__(self, settings: Settings, master: MasterKey) -> None:
        self.directory = demo_mail.mail_dir(settings)
        self.master = master

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mail_from = envelope.mail_from or ""
        content = envelope.original_content or b""
        rcpt_tos = list(envelope.rcpt_tos)
        # Sealing and an fsync: off the event loop.
        number = await asyncio.to_thread(
            demo_mail.store, self.directory, self.master,
            mail_from="" if mail_from == "<>" else mail_from, rcpt_tos=rcpt_tos,
            content=content)
        log.info("demo catcher: caught message %d for %s", number, ", ".join(rcpt_tos))
        return f"250 2.0.0 Ok: caught as {number}"


async def serve_catcher(settings: Settings, stop: asyncio.Event,
                        bound: list[tuple[str, int]] | None = None) -> None:
    """Listen on ``demo.catcher`` until ``stop`` is set; the bound address goes to ``bound``."""
    listener = settings.demo.catcher
    master = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    handler = CatcherHandler(settings, master)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(handler, hostname=f"catcher.{settings.smtp.hostname}",
                    data_size_limit=settings.smtp.max_message_bytes * 2,
                    enable_SMTPUTF8=True, loop=loop)

    while True:
        try:
            server = await loop.create_server(factory, listener.host, listener.port)
            break
        except OSError as exc:
            log.error("demo catcher cannot listen on %s:%d (%s); trying again in %.0f s",
                      listener.host, listener.port, exc.strerror or exc, BIND_RETRY_SECONDS)
            try:
                await asyncio.wait_for(stop.wait(), BIND_RETRY_SECONDS)
                return
            except TimeoutError:
                continue
    host, port = server.sockets[0].getsockname()[:2]
    if bound is not None:
        bound.append((str(host), int(port)))
    log.info("demo catcher listening on %s:%d; keeps mail sealed in %s", host, port,
             handler.directory)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def run_catcher(settings: Settings) -> int:
    """``xgate serve catcher``: the demo catcher in this process, until SIGTERM/SIGINT."""
    from gateway.serve.parts import run_until_stopped

    run_until_stopped(lambda stop: serve_catcher(settings, stop))
    log.info("demo catcher stopped")
    return 0


class BackgroundCatcher:
    """The catcher on its own event loop in a thread (for tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="demo-catcher", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10) -> tuple[str, int]:
        self._thread.start()
        if not self._ready.wait(timeout) or self.address is None:
            raise RuntimeError("demo catcher did not start") from self._error
        return self.address

    def stop(self, timeout: float = 10) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        async def _main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            bound: list[tuple[str, int]] = []
            task = asyncio.create_task(serve_catcher(self.settings, self._stop, bound))
            while not bound and not task.done():
                await asyncio.sleep(0.01)
            self.address = bound[0] if bound else None
            self._ready.set()
            await task

        try:
            asyncio.run(_main())
        except (OSError, CryptoError) as exc:  # a missing master key: start() reports it
            self._error = exc
            self._ready.set()
