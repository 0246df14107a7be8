"""The SMTP listeners on their own event loop in a background thread.

For tests (they talk to the listeners over real sockets from the main thread) and for a
process whose main thread does something else.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from gateway.services import Services
from gateway.smtp.handler import ListenerKind
from gateway.smtp.server import Listener, start_listeners


class BackgroundListeners:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.addresses: dict[ListenerKind, tuple[str, int]] = {}
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="smtp-listeners", daemon=True)

    def start(self, timeout: float = 10) -> dict[ListenerKind, tuple[str, int]]:
        """Start the listeners; returns the bound (host, port) of each enabled one."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("SMTP listeners did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return dict(self.addresses)

    def stop(self, timeout: float = 10) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def active_connections(self, kind: ListenerKind) -> int:
        """Open connections of one listener, read on the loop's own thread."""
        assert self._loop is not None

        async def count() -> int:
            return sum(lst.active_connections for lst in self._listeners if lst.kind is kind)

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(5)

    def __enter__(self) -> BackgroundListeners:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        # asyncio.run cancels what is left (sessions of closed connections) and shuts the
        # default executor down, so no database thread outlives stop().
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            # A failed start is re-raised in the thread that called start().
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._listeners = await start_listeners(self.services)
        self.addresses = {lst.kind: lst.address for lst in self._listeners}
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for listener in self._listeners:
                await listener.close()
