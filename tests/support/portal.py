"""The citizen portal under uvicorn on loopback, in a thread of the test process, and a form
token fetched the way a browser gets it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from gateway.clock import Clock, system_clock
from gateway.portal.app import create_portal_app
from gateway.settings import Settings
from tests.support.ports import free_port
from tests.support.web import serving


@contextmanager
def serving_portal(settings: Settings, *, clock: Clock = system_clock) -> Iterator[str]:
    """``create_portal_app(settings)`` served while in the block; yields its base URL."""
    port = free_port()
    with serving(uvicorn.Config(create_portal_app(settings, clock=clock), host="127.0.0.1",
                                port=port, log_config=None, lifespan="on")):
        yield f"http://127.0.0.1:{port}"


def form_token(client: httpx.Client) -> str:
    """The upload form's token; the client keeps its cookie."""
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)
