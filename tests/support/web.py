"""The real web app under uvicorn on loopback, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from admin_ui.app import create_app
from gateway.clock import Clock, system_clock
from gateway.settings import Settings
from tests.support.ports import free_port


@contextmanager
def serving(config: uvicorn.Config) -> Iterator[None]:
    """A uvicorn server for ``config`` in a thread while in the block (started when the
    block begins, stopped at its end)."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "web app did not start"
        assert thread.is_alive(), "web app thread died"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving_web_app(settings: Settings, *, clock: Clock = system_clock,
                    **config: Any) -> Iterator[int]:
    """``create_app(settings)`` on 127.0.0.1 while in the block; yields its port.
    ``clock``: the app's time (a FakeClock lets a test move it, e.g. past a deadline).
    ``config``: further uvicorn.Config options (``ssl_certfile`` and ``ssl_keyfile``)."""
    port = free_port()
    with serving(uvicorn.Config(create_app(settings, clock=clock), host="127.0.0.1",
                                port=port, log_config=None, lifespan="on", **config)):
        yield port
