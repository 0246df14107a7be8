"""The web apps' uvicorn configuration (gateway.serve.parts.http_config): whose
X-Forwarded-For is believed. The portal's rate limits and the staff app's login throttle count
``request.client``; behind a proxy that must be the citizen, and nobody else may choose it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.serve.parts import http_config
from gateway.settings import Settings
from tests.support.ports import free_port
from tests.support.web import serving


async def _client_address(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.client.host if request.client else "none")


APP = Starlette(routes=[Route("/who", _client_address)])


@contextmanager
def serving_echo(settings: Settings, trusted: list[str]) -> Iterator[str]:
    port = free_port()
    with serving(http_config(APP, settings, host="127.0.0.1", port=port, tls=False,
                             trusted_proxies=trusted)):
        yield f"http://127.0.0.1:{port}/who"


def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with serving_echo(settings, ["127.0.0.1"]) as url:
        answer = httpx.get(url, headers={"X-Forwarded-For": "203.0.113.7"})
    assert answer.text == "203.0.113.7"


def test_anyone_else_cannot_choose_their_address(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    # The proxy is elsewhere: the header from this loopback peer is ignored.
    with serving_echo(settings, ["192.0.2.10"]) as url:
        answer = httpx.get(url, headers={"X-Forwarded-For": "203.0.113.7"})
    assert answer.text == "127.0.0.1"


def test_both_apps_take_their_own_setting() -> None:
    defaults = Settings()
    assert defaults.portal.trusted_proxies == ["127.0.0.1"]
    assert defaults.web.trusted_proxies == ["127.0.0.1"]
