"""The citizen portal under uvicorn on loopback, in a thread of the test process, and a form
token fetched the way a browser gets it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from gateway.clock import Clock, system_clock
from gateway.portal.app import create_portal_app
from gateway.settings import Settings
from tests.support.postgres import free_port


@contextmanager
def serving_portal(settings: Settings, *, clock: Clock = system_clock) -> Iterator[str]:
    """``create_portal_app(settings)`` served while in the block; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_portal_app(settings, clock=clock),
                                           host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "portal did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def form_token(client: httpx.Client) -> str:
    """The upload form's token; the client keeps its cookie."""
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)
